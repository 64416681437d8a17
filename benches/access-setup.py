#!/usr/bin/env python3
"""Writes the files of benches/compare-access.toml into a directory (default /tmp/edgegate-bench):
an RSA key and its jwks.json, a long-lived RS256 token, and a keys.toml with one API key.
Prints the two request headers for ../shared/bench/compare.sh. Uses the openssl command line."""
import base64, hashlib, json, os, subprocess, sys, time

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/edgegate-bench"
os.makedirs(out, exist_ok=True)
key = os.path.join(out, "bench.key")
subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
text = subprocess.run(["openssl", "rsa", "-in", key, "-noout", "-modulus"], check=True, capture_output=True, text=True).stdout
n = bytes.fromhex(text.strip().split("=", 1)[1])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
with open(os.path.join(out, "jwks.json"), "w") as f:
    json.dump({"keys": [{"kty": "RSA", "kid": "bench", "alg": "RS256", "n": b64(n), "e": b64(b"\x01\x00\x01")}]}, f)
header = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "bench"}).encode())
claims = b64(json.dumps({"iss": "https://auth.bench/", "aud": "bench", "sub": "bench-user",
                         "exp": int(time.time()) + 86400, "scope": "bench/read"}).encode())
signing_input = f"{header}.{claims}".encode()
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input, check=True, capture_output=True).stdout
token = f"{header}.{claims}.{b64(sig)}"
api_key = "bench-api-key-0123456789abcdef"
with open(os.path.join(out, "keys.toml"), "w") as f:
    f.write(f'[[keys]]\nid = "bench"\nname = "bench"\nhash = "sha256:{hashlib.sha256(api_key.encode()).hexdigest()}"\nplan = "bench"\n')
print(f"Authorization: Bearer {token}")
print(f"x-api-key: {api_key}")
