# Slow headers: opens N connections (from 200 loopback addresses) that send a request line and
# one header, then nothing; at each checkpoint (seconds) reports how many the server still
# holds open, and /healthz from another address.
# Usage: python3 slow_headers.py HOST PORT N CHECKPOINTS (e.g. 2,20,32,40)
import socket, sys, time, threading, urllib.request
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
checkpoints = [int(x) for x in sys.argv[4].split(",")]
socks = []
for i in range(n):
    s = socket.socket()
    s.bind(("127.0.0.%d" % (10 + i % 200), 0))  # many client addresses: the per-client cap aside
    s.settimeout(5)
    try:
        s.connect((host, port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        s.setblocking(False)
        socks.append(s)
    except Exception as e:
        pass
print(f"opened {len(socks)} slow connections", flush=True)
def open_count():
    alive = 0
    for s in socks:
        try:
            data = s.recv(1)
            if data == b"":
                continue
            alive += 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive
start = time.time()
for cp in checkpoints:
    time.sleep(max(0, cp - (time.time() - start)))
    t = time.time()
    src = socket.socket(); src.bind(("127.0.0.250", 0)); src.settimeout(10)
    try:
        src.connect((host, port)); src.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = src.recv(100); lat = (time.time() - t) * 1000; ok = reply.startswith(b"HTTP/1.1 200")
    except Exception as e:
        lat, ok = (time.time() - t) * 1000, False
    src.close()
    print(f"t={cp:>4}s still open: {open_count():>4}/{len(socks)}   /healthz from another address: {'200' if ok else 'FAILED'} in {lat:.1f} ms", flush=True)
