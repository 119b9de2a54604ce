#!/usr/bin/python3
"""Federation scenarios: one slixmpp client on Wren and one on another
server (Prosody, ejabberd), talking across server-to-server streams.

Usage:
    slixmpp_s2s.py SCENARIO --wren USER@DOMAIN:PORT:CAFILE --peer USER@DOMAIN:PORT:CAFILE
Passwords are 'secret-<user>'. Scenarios:
    federate   subscription handshake both ways, presence, messages both
               ways, probes, unavailable presence
    bounce     a message from the Wren user to the peer user comes back
               with the error condition given by --condition
"""
import argparse
import asyncio
import logging
import sys
import time

import slixmpp

TIMEOUT = 30


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("ok:", what, flush=True)


class Account:
    def __init__(self, spec):
        user_domain, port, ca = spec.split(":", 2)
        self.jid = user_domain
        self.user = user_domain.split("@")[0]
        self.port = int(port)
        self.ca = ca


class Client(slixmpp.ClientXMPP):
    def __init__(self, account, resource):
        super().__init__(account.jid + "/" + resource, "secret-" + account.user)
        self.account = account
        self.ca_certs = account.ca
        self.auto_authorize = None
        self.auto_subscribe = False
        self.stanzas = asyncio.Queue()
        self.session_started = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self._on_start)
        self.add_event_handler('failed_all_auth', self._on_failed)
        for ev in ('message', 'presence'):
            self.add_event_handler(ev, lambda s: self.stanzas.put_nowait(s))

    async def _on_start(self, _):
        if not self.session_started.done():
            self.session_started.set_result(True)

    def _on_failed(self, _):
        if not self.session_started.done():
            self.session_started.set_result(False)

    async def login(self):
        self.connect(address=('127.0.0.1', self.account.port), force_starttls=True)
        ok = await asyncio.wait_for(self.session_started, TIMEOUT)
        check(ok, f"{self.account.jid} logs in")
        await self.get_roster()
        self.send_presence()

    async def expect(self, pred, what):
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail("timed out waiting for " + what)
            try:
                st = await asyncio.wait_for(self.stanzas.get(), left)
            except asyncio.TimeoutError:
                raise Fail("timed out waiting for " + what)
            if pred(st):
                print("ok:", what, flush=True)
                return st

    async def close(self):
        done = asyncio.get_event_loop().create_future()
        self.add_event_handler('disconnected', lambda _: done.done() or done.set_result(True))
        self.disconnect()
        await asyncio.wait_for(done, 10)


def presence(frm, typ):
    """Matches presence from a bare (or full) JID with a type ('' = available)."""
    def match(st):
        if st.name != 'presence':
            return False
        f = str(st['from'])
        same = f == frm or (('/' not in frm) and str(st['from'].bare) == frm)
        t = st['type']
        if typ == '':
            return same and t in ('available', '', 'chat', 'away', 'xa', 'dnd')
        return same and t == typ
    return match


def message(frm, body):
    return lambda st: st.name == 'message' and str(st['from'].bare) == frm and st['body'] == body and st['type'] != 'error'


async def federate(args):
    w = Client(Account(args.wren), "w1")
    p = Client(Account(args.peer), "p1")
    await w.login()
    await p.login()
    wj, pj = w.account.jid, p.account.jid

    # Wren's user asks for the peer's presence; the peer approves.
    w.send_presence(pto=pj, ptype='subscribe')
    await p.expect(presence(wj, 'subscribe'), f"{pj} gets the subscription request of {wj}")
    p.send_presence(pto=wj, ptype='subscribed')
    await w.expect(presence(pj, 'subscribed'), f"{wj} learns the request was approved")
    await w.expect(presence(pj, ''), f"{wj} receives the presence of {pj}")

    # And the other way round.
    p.send_presence(pto=wj, ptype='subscribe')
    await w.expect(presence(pj, 'subscribe'), f"{wj} gets the subscription request of {pj}")
    w.send_presence(pto=pj, ptype='subscribed')
    await p.expect(presence(wj, 'subscribed'), f"{pj} learns the request was approved")
    await p.expect(presence(wj, ''), f"{pj} receives the presence of {wj}")

    w.send_message(mto=pj, mbody="hello from wren", mtype='chat')
    await p.expect(message(wj, "hello from wren"), f"{pj} receives a message from {wj}")
    p.send_message(mto=w.boundjid, mbody="hello from the peer", mtype='chat')
    await w.expect(message(pj, "hello from the peer"), f"{wj} receives a message from {pj}")

    # A second resource on each side probes its contacts on the other.
    w2 = Client(Account(args.wren), "w2")
    await w2.login()
    await w2.expect(presence(str(p.boundjid), ''), f"a new resource of {wj} learns the presence of {pj} (probe)")
    p2 = Client(Account(args.peer), "p2")
    await p2.login()
    await p2.expect(presence(str(w.boundjid), ''), f"a new resource of {pj} learns the presence of {wj} (probe)")

    # Going offline is seen on the other side.
    await p2.close()
    await p.close()
    await w.expect(presence(str(p.boundjid), 'unavailable'), f"{wj} sees {pj} go offline")
    await w2.close()
    await w.close()


async def bounce(args):
    w = Client(Account(args.wren), "w1")
    await w.login()
    pj = Account(args.peer).jid
    start = time.monotonic()
    w.send_message(mto=pj, mbody="is anyone there?", mtype='chat')
    st = await w.expect(lambda st: st.name == 'message' and st['type'] == 'error',
                        f"the message to {pj} comes back with an error")
    cond = st['error']['condition']
    check(cond == args.condition, f"the error is {args.condition} (got {cond}: {st['error']['text']})")
    print(f"bounced after {time.monotonic() - start:.2f}s", flush=True)
    await w.close()


SCENARIOS = {'federate': federate, 'bounce': bounce}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--wren", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--condition", default="remote-server-not-found")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(SCENARIOS[args.scenario](args), 150))
    except Fail as e:
        print("FAIL:", e, flush=True)
        sys.exit(1)
    print("PASS", args.scenario, flush=True)


if __name__ == "__main__":
    main()
