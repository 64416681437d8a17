"""Load for benches/websocket.sh (python `websockets`; loopback only, every loop bounded).

    ws_load.py idle URL N HOLD_SECS            open N connections, hold them, print "open N"
    ws_load.py messages URL N RATE SECS        N connections, each RATE messages/s for SECS
    ws_load.py manage ADMIN HOME_ADMIN URL SECS  management POSTs to one connection, keep-alive,
                                               sent to ADMIN (HOME_ADMIN: the holding node's)
"""
import asyncio, http.client, json, sys, time
import websockets


async def open_paced(url, n, **kw):
    """Opens n connections at 400 a second (the gateway admits 500 new ones a second per stage)."""
    conns, start = [], time.monotonic()
    for i in range(n):
        conns.append(await websockets.connect(url, ping_interval=None, **kw))
        delay = start + (i + 1) / 400 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return conns


async def idle(url, n, hold):
    conns = await open_paced(url, n, max_queue=1)
    print(f"open {len(conns)}", flush=True)
    await asyncio.sleep(hold)
    for c in conns:
        await c.close()


async def messages(url, n, rate, secs):
    conns = await open_paced(url, n)
    sent = 0
    start = time.monotonic()

    async def one(c):
        nonlocal sent
        for k in range(int(rate * secs)):
            await c.send(json.dumps({"action": "msg", "k": k}))
            sent += 1
            # paced: k-th message at k/rate seconds
            delay = start + (k + 1) / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    await asyncio.gather(*(one(c) for c in conns))
    print(json.dumps({"sent": sent, "secs": round(time.monotonic() - start, 2)}), flush=True)
    for c in conns:
        await c.close()


async def manage(admin, home_admin, url, secs):
    async with websockets.connect(url, ping_interval=None, max_queue=None) as ws:
        await ws.send(json.dumps({"action": "whoami"}))
        conn_id = None
        host, port = admin.split(":")
        h = http.client.HTTPConnection(host, int(port))
        # the connection id comes back from the $default integration's echo of the headers
        conn_id = (await ws.recv()).strip()
        path = "/@connections/" + conn_id.replace("=", "%3D")
        n, start = 0, time.monotonic()
        drain = asyncio.create_task(drain_all(ws))
        while time.monotonic() - start < secs:
            h.request("POST", path, body=b"x")
            r = h.getresponse()
            r.read()
            assert r.status == 200, (r.status, path)
            n += 1
            if n % 200 == 0:
                await asyncio.sleep(0)
        print(json.dumps({"posts": n, "per_sec": round(n / (time.monotonic() - start))}), flush=True)
        drain.cancel()


async def drain_all(ws):
    while True:
        await ws.recv()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "idle":
        asyncio.run(idle(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    elif mode == "messages":
        asyncio.run(messages(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])))
    else:
        asyncio.run(manage(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
