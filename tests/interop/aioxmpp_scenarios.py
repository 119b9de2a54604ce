#!/usr/bin/python3
"""Interop scenario driving a running Wren server with aioxmpp.

Usage: aioxmpp_scenarios.py chat --port P --domain D
The accounts alice and bob (password 'secret-<name>') must exist.
"""
import argparse
import asyncio
import sys

import aioxmpp
import aioxmpp.connector
import aioxmpp.dispatcher

TIMEOUT = 15


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("ok:", what, flush=True)


def client(args, name, resource):
    jid = aioxmpp.JID.fromstr(f"{name}@{args.domain}/{resource}")
    # The test server's certificate is self-signed and generated per run;
    # certificate checks are covered by the slixmpp and go-sendxmpp tests.
    security = aioxmpp.make_security_layer("secret-" + name, no_verify=True)
    return aioxmpp.PresenceManagedClient(
        jid, security,
        override_peer=[("127.0.0.1", args.port, aioxmpp.connector.STARTTLSConnector())])


async def chat(args):
    alice = client(args, "alice", "aio")
    bob = client(args, "bob", "aio")
    received = asyncio.Queue()

    def on_message(msg):
        if msg.body:
            received.put_nowait(msg)

    async with bob.connected():
        check(bob.stream.sm_enabled, "bob's stream has stream management enabled")
        bob.summon(aioxmpp.dispatcher.SimpleMessageDispatcher).register_callback(aioxmpp.MessageType.CHAT, None, on_message)
        async with alice.connected():
            check(alice.stream.sm_enabled, "alice's stream has stream management enabled")
            check(str(alice.local_jid) == f"alice@{args.domain}/aio", "alice bound her resource")
            for i in range(20):
                msg = aioxmpp.Message(to=aioxmpp.JID.fromstr(f"bob@{args.domain}"), type_=aioxmpp.MessageType.CHAT)
                msg.body[None] = f"hello {i}"
                await alice.send(msg)
            got = []
            for _ in range(20):
                m = await asyncio.wait_for(received.get(), TIMEOUT)
                got.append(m.body.any())
            check(got == [f"hello {i}" for i in range(20)], "bob received 20 messages in order")
            check(str(m.from_) == f"alice@{args.domain}/aio", "from alice's full JID")
            # aioxmpp counts what the server acknowledged.
            await asyncio.sleep(0.5)
            check(len(alice.stream.sm_unacked_list) == 0, "the server acknowledged everything alice sent")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["chat"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--domain", required=True)
    args = ap.parse_args()
    try:
        asyncio.run(asyncio.wait_for(chat(args), 60))
    except Fail as e:
        print("FAIL:", e, flush=True)
        sys.exit(1)
    print("PASS", args.scenario, flush=True)


if __name__ == "__main__":
    main()
