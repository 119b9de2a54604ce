#!/usr/bin/python3
"""A slixmpp client that stays online until the server ends its session,
for the admin CLI tests (wren session list/kick, wren user del).

Usage: slixmpp_admin.py USER --port P --domain D --ca FILE
Prints "ONLINE <full JID>" once the session is up, then "ENDED <condition>:
<text>" when the server closes the stream with an error, and exits 0 when
disconnected (1 if the session never came up).
"""
import argparse
import asyncio
import logging
import sys

import slixmpp


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, ca):
        super().__init__(jid, password)
        self.ca_certs = ca
        self.register_plugin('xep_0198')  # resumable: a kick must still end it
        self.started = asyncio.get_event_loop().create_future()
        self.gone = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self._start)
        self.add_event_handler('failed_all_auth', lambda _: self.started.done() or self.started.set_result(False))
        self.add_event_handler('stream_error', self._stream_error)
        self.add_event_handler('disconnected', lambda _: self.gone.done() or self.gone.set_result(True))

    async def _start(self, _):
        await self.get_roster()
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    def _stream_error(self, err):
        cond = err['condition']
        print(f"ENDED {cond}: {err['text']}", flush=True)


async def main(args):
    c = Client(f"{args.user}@{args.domain}/cli-test", "secret-" + args.user, args.ca)
    c.connect(address=('127.0.0.1', args.port), force_starttls=True)
    ok = await asyncio.wait_for(c.started, 20)
    if not ok:
        print("FAIL: login refused", flush=True)
        sys.exit(1)
    print("ONLINE", c.boundjid.full, flush=True)
    await asyncio.wait_for(c.gone, 120)
    # Do not reconnect: the test checks that the session is gone for good.
    c.abort()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("user")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--ca", required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main(args))
