"""WebSocket transparency through an http route, with python `websockets` on both ends.

    ws_passthrough.py serve PORT CLOSEFILE   an echo origin; writes the close code it got
    ws_passthrough.py client URL CLOSEFILE   text, binary, fragmented, 1 MB, ping, close 4001;
                                             prints what it saw as JSON
"""
import asyncio, json, sys, time
import websockets


async def serve(port, closefile):
    async def echo(ws):
        try:
            async for m in ws:
                await ws.send(m)
        except websockets.ConnectionClosed:
            pass
        with open(closefile, "w") as f:
            f.write(str(ws.close_code))

    async with websockets.serve(echo, "127.0.0.1", port, max_size=4 << 20):
        await asyncio.Future()


async def client(url, closefile):
    out = {}
    async with websockets.connect(url, max_size=4 << 20) as ws:
        await ws.send("héllo")
        m = await ws.recv()
        out["text"] = [type(m).__name__, m]
        await ws.send(b"\x00\xffbin")
        m = await ws.recv()
        out["binary"] = [type(m).__name__, m.hex()]
        await ws.send(["frag", "ment", "ed"])  # one message in three frames
        out["fragmented"] = await ws.recv()
        big = bytes(range(256)) * 4096  # 1 MiB
        await ws.send(big)
        out["big"] = (await ws.recv()) == big
        t = time.monotonic()
        pong = await ws.ping(b"p1")
        await asyncio.wait_for(pong, 5)
        out["pong_ms"] = round((time.monotonic() - t) * 1000, 1)
        await ws.close(4001, "bye")
        out["client_close"] = ws.close_code
    for _ in range(50):
        try:
            with open(closefile) as f:
                out["origin_close"] = int(f.read())
                break
        except (FileNotFoundError, ValueError):
            await asyncio.sleep(0.1)
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve(int(sys.argv[2]), sys.argv[3]))
    else:
        asyncio.run(client(sys.argv[2], sys.argv[3]))
