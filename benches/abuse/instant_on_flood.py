# Instant On flood: C clients post junk (code-shaped) Instant On codes for D seconds from one
# address (127.0.0.3); halfway through, the sandbox Hint installs the practice again from its
# own address, and that real install is timed.
# Usage: python3 instant_on_flood.py APP_URL HINT_URL CLIENTS SECONDS
import asyncio, sys, time, json, urllib.request
app, hint, clients, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
host, port = app.split("//")[1].split(":"); port = int(port.strip("/"))
counts = {}
async def junk(i, stop):
    n = 0
    while time.time() < stop:
        try:
            r, w = await asyncio.open_connection(host, port, local_addr=("127.0.0.3", 0))
            w.write(f"POST /hint/connect/junkcode{i:04d}x{n:06d} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await w.drain()
            line = await asyncio.wait_for(r.readline(), 30)
            code = line.split(b" ")[1].decode() if line else "closed"
            w.close()
        except Exception as e:
            code = "closed"
        counts[code] = counts.get(code, 0) + 1
        n += 1
async def real(delay):
    """The sandbox Hint's install (it mints a code and posts it to us), timed."""
    await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    def install():
        # Hint (the sandbox, from its own address 127.0.0.1) installs the practice again.
        import http.client
        h = http.client.HTTPConnection(hint.split("//")[1].strip("/"), timeout=120)
        t = time.time()
        h.request("POST", "/install", body="as=admin", headers={"Content-Type": "application/x-www-form-urlencoded"})
        status = h.getresponse().status
        return status, time.time() - t
    return await loop.run_in_executor(None, install)
async def main():
    stop = time.time() + duration
    tasks = [asyncio.create_task(junk(i, stop)) for i in range(clients)]
    status, took = await real(duration / 2)
    await asyncio.gather(*tasks)
    print(f"real install during the flood: {status} in {took*1000:.0f} ms; flood answers: {counts}")
asyncio.run(main())
