"""A slow link on loopback: relays LISTEN_PORT to UPSTREAM_PORT, delivering every chunk DELAY_MS
after it arrived, in order, in both directions (so a round trip costs 2 x DELAY_MS). The TCP
handshake, which loopback completes at once, is charged as the round trip it costs on a real
link: nothing the client sends reaches the server before one round trip after the connect.
Appends one line per connection when it closes to LOG: `NAME round_trips`, counting the
handshake and each time the client spoke and then the server answered.
    python3 bench/relay.py NAME LISTEN_PORT UPSTREAM_PORT DELAY_MS LOG"""
import asyncio
import sys

name, listen, upstream, delay_ms, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
DELAY = delay_ms / 1000


async def pump(reader, writer, turns, side, not_before):
    """Copies reader to writer, each chunk DELAY later than it came (and not before `not_before`
    plus DELAY); notes whose turn it is."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()
        writer.close()

    delivering = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            if turns[-1] != side:
                turns.append(side)
            queue.put_nowait((max(loop.time(), not_before) + DELAY, data))
    except ConnectionError:
        pass
    queue.put_nowait((0, None))
    try:
        await delivering
    except ConnectionError:
        pass


async def handle(client_r, client_w):
    connected = asyncio.get_running_loop().time() + 2 * DELAY
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
    except OSError:
        client_w.close()
        return
    turns = ["server"]
    await asyncio.gather(
        pump(client_r, server_w, turns, "client", connected), pump(server_r, client_w, turns, "server", 0.0)
    )
    # The handshake, then each client turn followed by a server turn.
    trips = 1 + sum(1 for a, b in zip(turns, turns[1:]) if a == "client" and b == "server")
    with open(log, "a") as f:
        f.write("%s %d\n" % (name, trips))


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


asyncio.run(main())
