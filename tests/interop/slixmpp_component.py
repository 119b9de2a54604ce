#!/usr/bin/python3
"""An external component (XEP-0114) built with slixmpp's ComponentXMPP,
talking to a local account of Wren.

Usage:
    slixmpp_component.py --domain D --component C --component-port P
        --secret S --port CLIENT_PORT --ca FILE
The account alice@D (password 'secret-alice') must exist. The scenario
checks messages and IQs both ways, then that a wrong secret is refused.
"""
import argparse
import asyncio
import logging
import sys
import time

import slixmpp

TIMEOUT = 20


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("ok:", what, flush=True)


class Component(slixmpp.ComponentXMPP):
    def __init__(self, args, secret):
        super().__init__(args.component, secret, '127.0.0.1', args.component_port)
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0092')  # answers software version queries
        self.register_plugin('xep_0199')  # sends pings
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', lambda _: self.started.done() or self.started.set_result(True))
        self.add_event_handler('disconnected', lambda _: self.started.done() or self.started.set_result(False))
        self.add_event_handler('message', self._echo)
        self.errors = []
        self.add_event_handler('stream_error', lambda e: self.errors.append(e['condition']))

    def _echo(self, msg):
        if msg['type'] in ('chat', 'normal') and msg['body']:
            msg.reply("echo: " + msg['body']).send()


class Client(slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(f"alice@{args.domain}/desk", "secret-alice")
        self.ca_certs = args.ca
        self.register_plugin('xep_0092')
        self.register_plugin('xep_0199')  # answers pings
        self.messages = asyncio.Queue()
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', lambda _: self.started.done() or self.started.set_result(True))
        self.add_event_handler('failed_all_auth', lambda _: self.started.done() or self.started.set_result(False))
        self.add_event_handler('message', lambda m: self.messages.put_nowait(m))


async def scenario(args):
    comp = Component(args, args.secret)
    comp.connect()
    check(await asyncio.wait_for(comp.started, TIMEOUT), "the component connects with the right secret")

    alice = Client(args)
    alice.connect(address=('127.0.0.1', args.port), force_starttls=True)
    check(await asyncio.wait_for(alice.started, TIMEOUT), "alice logs in")
    alice.send_presence()

    alice.send_message(mto=f"echo@{args.component}", mbody="hello", mtype='chat')
    deadline = time.monotonic() + TIMEOUT
    while True:
        m = await asyncio.wait_for(alice.messages.get(), max(0.1, deadline - time.monotonic()))
        if m['body'] == "echo: hello":
            break
    check(str(m['from']) == f"echo@{args.component}", "the component's answer comes from its domain")

    version = await alice['xep_0092'].get_version(args.component, timeout=TIMEOUT)
    check(version['software_version']['name'] != '', "alice's IQ to the component is answered (software version)")

    rtt = await comp['xep_0199'].ping(alice.boundjid, ifrom=args.component, timeout=TIMEOUT)
    check(rtt is not None, "the component's IQ to alice is answered (ping)")

    wrong = Component(args, "not-the-secret")
    wrong.connect()
    ok = await asyncio.wait_for(wrong.started, TIMEOUT)
    check(not ok, "a component with a wrong secret is refused")
    check('not-authorized' in wrong.errors, f"with a not-authorized stream error (got {wrong.errors})")

    alice.disconnect()
    comp.disconnect()
    await asyncio.sleep(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--domain", required=True)
    ap.add_argument("--component", required=True)
    ap.add_argument("--component-port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(args), 120))
    except (Fail, asyncio.TimeoutError) as e:
        print("FAIL:", repr(e), flush=True)
        sys.exit(1)
    print("PASS component", flush=True)


if __name__ == "__main__":
    main()
