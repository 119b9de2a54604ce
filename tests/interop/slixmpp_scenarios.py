#!/usr/bin/python3
"""Interop scenarios that drive a running Wren server with slixmpp.

Each scenario prints what it checks and exits non-zero on the first
failure. Usage:
    slixmpp_scenarios.py SCENARIO --port P --tls-port T --domain D --ca FILE
The accounts alice, bob (password 'secret-<name>') must exist.
"""
import argparse
import asyncio
import logging
import sys
import time

import slixmpp

TIMEOUT = 15


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("ok:", what, flush=True)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, args, mech=None, direct_tls=False):
        super().__init__(jid, password)
        self.args = args
        self.direct_tls = direct_tls
        self.ca_certs = args.ca
        self.register_plugin('xep_0203')  # delayed delivery stamps
        if mech:
            self['feature_mechanisms'].use_mech = mech
        self.messages = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.subscriptions = asyncio.Queue()
        self.session_started = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self._on_start)
        self.add_event_handler('failed_all_auth', self._on_failed)
        self.add_event_handler('message', lambda m: self.messages.put_nowait(m))
        self.add_event_handler('presence', lambda p: self.presences.put_nowait(p))
        self.add_event_handler('presence_subscribe', lambda p: self.subscriptions.put_nowait(p))
        self.add_event_handler('presence_subscribed', lambda p: self.subscriptions.put_nowait(p))
        self.auto_authorize = None
        self.auto_subscribe = False

    async def _on_start(self, _):
        if not self.session_started.done():
            self.session_started.set_result(True)

    def _on_failed(self, _):
        if not self.session_started.done():
            self.session_started.set_result(False)

    async def login(self, presence=True, roster=True):
        port = self.args.tls_port if self.direct_tls else self.args.port
        self.connect(address=('127.0.0.1', port), use_ssl=self.direct_tls,
                     force_starttls=not self.direct_tls)
        ok = await asyncio.wait_for(self.session_started, TIMEOUT)
        if ok and roster:
            await self.get_roster()
        if ok and presence:
            self.send_presence()
        return ok

    async def close(self):
        """End the stream politely and wait (bounded) for the server to close."""
        done = asyncio.get_event_loop().create_future()
        self.add_event_handler('disconnected', lambda _: done.done() or done.set_result(True))
        self.disconnect()
        try:
            await asyncio.wait_for(done, 5)
        except asyncio.TimeoutError:
            raise Fail("the server did not close the stream after </stream:stream>")

    def drop_tcp(self):
        """Cut the TCP connection without closing the XMPP stream."""
        self.transport.abort()


def jid(args, name):
    return f"{name}@{args.domain}"


def pw(name):
    return "secret-" + name


async def next_matching(queue, pred, what):
    deadline = time.monotonic() + TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Fail("timed out waiting for " + what)
        try:
            item = await asyncio.wait_for(queue.get(), left)
        except asyncio.TimeoutError:
            raise Fail("timed out waiting for " + what)
        if pred(item):
            return item


async def login_scenario(args):
    # Run against a server with channel binding off: slixmpp only knows
    # tls-unique, which TLS 1.3 does not define, so it cannot do -PLUS here.
    for mech in ("SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"):
        for direct in (False, True):
            c = Client(jid(args, "alice"), pw("alice"), args, mech=mech, direct_tls=direct)
            ok = await c.login(presence=False, roster=False)
            check(ok, f"alice logs in with {mech} over {'direct TLS' if direct else 'STARTTLS'}")
            check(str(c.boundjid.bare) == jid(args, "alice"), "bound JID is alice's")
            check(c.boundjid.resource != "", "server assigned or accepted a resource")
            await c.close()


async def downgrade_scenario(args):
    # The server offers -PLUS; a client that supports channel binding but
    # picks plain SCRAM says so with the 'y' flag, and must be refused
    # (RFC 5802 §6): someone may have stripped -PLUS from what it saw.
    c = Client(jid(args, "alice"), pw("alice"), args, mech="SCRAM-SHA-256")
    failures = []
    c.add_event_handler('failed_auth', lambda f: failures.append(str(f)))
    ok = await c.login(presence=False, roster=False)
    check(ok is False, "SCRAM with the 'y' flag is refused while -PLUS is offered")
    check(any("downgrade" in f for f in failures), "the failure names the downgrade")
    c.disconnect()


async def wrong_password_scenario(args):
    for mech in ("SCRAM-SHA-256", "PLAIN"):
        c = Client(jid(args, "alice"), "not-the-password", args, mech=mech)
        failures = []
        c.add_event_handler('failed_auth', lambda f: failures.append(f))
        ok = await c.login(presence=False, roster=False)
        check(ok is False, f"wrong password is refused ({mech})")
        check(any(f['condition'] == 'not-authorized' for f in failures), f"the failure is not-authorized ({mech})")
        c.disconnect()
    c2 = Client(jid(args, "nosuchuser"), "whatever", args, mech="SCRAM-SHA-1")
    failures = []
    c2.add_event_handler('failed_auth', lambda f: failures.append(f))
    ok = await c2.login(presence=False, roster=False)
    check(ok is False and any(f['condition'] == 'not-authorized' for f in failures), "unknown user is refused with not-authorized")
    c2.disconnect()


async def chat_scenario(args):
    alice = Client(jid(args, "alice") + "/desk", pw("alice"), args)
    bob = Client(jid(args, "bob") + "/phone", pw("bob"), args, direct_tls=True)
    check(await alice.login(), "alice logged in")
    check(await bob.login(), "bob logged in")

    # alice -> bob subscription, bob approves; then bob -> alice, alice approves.
    alice.send_presence(pto=jid(args, "bob"), ptype="subscribe")
    req = await next_matching(bob.subscriptions, lambda p: p['type'] == 'subscribe', "bob receives alice's request")
    check(str(req['from'].bare) == jid(args, "alice"), "request comes from alice's bare JID")
    bob.send_presence(pto=jid(args, "alice"), ptype="subscribed")
    await next_matching(alice.subscriptions, lambda p: p['type'] == 'subscribed', "alice sees the approval")
    p = await next_matching(alice.presences, lambda p: p['from'].bare == jid(args, "bob") and p['type'] == 'available',
                            "alice sees bob's presence after approval")
    check(str(p['from']) == jid(args, "bob") + "/phone", "presence comes from bob's full JID")

    bob.send_presence(pto=jid(args, "alice"), ptype="subscribe")
    await next_matching(alice.subscriptions, lambda p: p['type'] == 'subscribe', "alice receives bob's request")
    alice.send_presence(pto=jid(args, "bob"), ptype="subscribed")
    await next_matching(bob.presences, lambda p: p['from'].bare == jid(args, "alice") and p['type'] == 'available',
                        "bob sees alice's presence")

    await alice.get_roster()
    sub = alice.client_roster[jid(args, "bob")]['subscription']
    check(sub == 'both', f"alice's roster shows subscription both with bob (got {sub})")
    await bob.get_roster()
    sub = bob.client_roster[jid(args, "alice")]['subscription']
    check(sub == 'both', f"bob's roster shows subscription both with alice (got {sub})")

    # Chat both ways.
    alice.send_message(mto=jid(args, "bob"), mbody="hello bob", mtype="chat")
    m = await next_matching(bob.messages, lambda m: m['body'] == "hello bob", "bob receives alice's message")
    check(str(m['from']) == jid(args, "alice") + "/desk", "message from alice's full JID")
    bob.send_message(mto=str(m['from']), mbody="hi alice", mtype="chat")
    await next_matching(alice.messages, lambda m: m['body'] == "hi alice", "alice receives bob's reply")

    # Presence update is broadcast.
    bob.send_presence(pshow="away", pstatus="lunch")
    p = await next_matching(alice.presences, lambda p: p['from'].bare == jid(args, "bob") and p['show'] == 'away',
                            "alice sees bob go away")
    check(p['status'] == "lunch", "status text is carried")

    # bob's TCP connection dies: alice must see him go unavailable.
    bob.drop_tcp()
    await next_matching(alice.presences, lambda p: p['from'].bare == jid(args, "bob") and p['type'] == 'unavailable',
                        "alice sees bob unavailable after his TCP connection died")

    # Offline message with delay stamp.
    alice.send_message(mto=jid(args, "bob"), mbody="while you were away", mtype="chat")
    await asyncio.sleep(0.5)
    bob2 = Client(jid(args, "bob") + "/laptop", pw("bob"), args)
    check(await bob2.login(), "bob logs in again")
    m = await next_matching(bob2.messages, lambda m: m['body'] == "while you were away", "bob gets the offline message")
    stamp = m['delay']['stamp']
    check(stamp is not None and m['delay']['from'] == args.domain,
          f"offline message carries a delay stamp from {m['delay']['from']} ({stamp})")
    await next_matching(alice.presences, lambda p: str(p['from']) == jid(args, "bob") + "/laptop" and p['type'] == 'available',
                        "alice sees bob's new resource")

    # Unsubscribe: alice cancels her subscription to bob.
    alice.send_presence(pto=jid(args, "bob"), ptype="unsubscribe")
    await next_matching(alice.presences, lambda p: p['from'].bare == jid(args, "bob") and p['type'] == 'unavailable',
                        "alice gets bob's unavailable after unsubscribing")
    await asyncio.sleep(0.3)
    await alice.get_roster()
    sub = alice.client_roster[jid(args, "bob")]['subscription']
    check(sub == 'from', f"alice's subscription to bob is now 'from' (got {sub})")

    await alice.close()
    await bob2.close()


class SMClient(Client):
    """A client with XEP-0198 stream management and resumption."""

    def __init__(self, jid_, password, args):
        super().__init__(jid_, password, args)
        self.register_plugin('xep_0198')
        self.events = asyncio.Queue()
        for ev in ('sm_enabled', 'session_resumed', 'sm_failed', 'stanza_acked', 'session_start'):
            self.add_event_handler(ev, lambda e, ev=ev: self.events.put_nowait((ev, e)))

    async def reconnect_tcp(self):
        port = self.args.port
        self.connect(address=('127.0.0.1', port), force_starttls=True)

    async def next_event(self, names, what):
        return await next_matching(self.events, lambda e: e[0] in names, what)


async def collect_bodies(client, n, what):
    bodies = []
    for _ in range(n):
        m = await next_matching(client.messages, lambda m: m['body'] != '', what)
        bodies.append(m['body'])
    return bodies


async def expect_quiet(queue, seconds, what):
    try:
        item = await asyncio.wait_for(queue.get(), seconds)
    except asyncio.TimeoutError:
        return
    raise Fail(f"{what}: unexpected {item}")


async def sm_resume_scenario(args):
    alice = Client(jid(args, "alice") + "/desk", pw("alice"), args)
    bob = SMClient(jid(args, "bob") + "/phone", pw("bob"), args)
    check(await alice.login(), "alice logged in")
    check(await bob.login(), "bob logged in")
    ev, enabled = await bob.next_event({'sm_enabled'}, "stream management enabled")
    check(bool(enabled['id']) and enabled['resume'], "server granted resumption with an id")

    # Acks: a message bob sends is acknowledged by the server.
    bob.send_message(mto=jid(args, "alice") + "/desk", mbody="ping from bob", mtype="chat")
    bob['xep_0198'].request_ack()
    await bob.next_event({'stanza_acked'}, "the server acknowledges bob's message")
    await next_matching(alice.messages, lambda m: m['body'] == "ping from bob", "alice receives bob's message")

    alice.send_message(mto=jid(args, "bob") + "/phone", mbody="m1", mtype="chat")
    check(await collect_bodies(bob, 1, "bob receives m1") == ["m1"], "bob received m1")

    # The phone loses its network: TCP is cut, no stream close.
    bob.drop_tcp()
    await asyncio.sleep(0.5)
    for body in ("m2", "m3", "m4"):
        alice.send_message(mto=jid(args, "bob") + "/phone", mbody=body, mtype="chat")
    await asyncio.sleep(0.3)
    await bob.reconnect_tcp()
    ev, resumed = await bob.next_event({'session_resumed', 'sm_failed', 'session_start'}, "bob resumes")
    check(ev == 'session_resumed', f"bob's session was resumed (got {ev})")
    got = await collect_bodies(bob, 3, "messages queued while bob was away")
    check(got == ["m2", "m3", "m4"], f"queued messages arrive once, in order ({got})")
    await expect_quiet(bob.messages, 1.0, "no duplicates after resume")
    await alice.close()
    await bob.close()


async def sm_bad_resume_scenario(args):
    bob = SMClient(jid(args, "bob") + "/phone", pw("bob"), args)
    check(await bob.login(), "bob logged in")
    await bob.next_event({'sm_enabled'}, "stream management enabled")
    bob_id = bob['xep_0198'].sm_id

    # mallory tries to take over bob's session with bob's id.
    mallory = SMClient(jid(args, "mallory") + "/x", pw("mallory"), args)
    mallory['xep_0198'].sm_id = bob_id
    mallory.connect(address=('127.0.0.1', args.port), force_starttls=True)
    ev, failed = await mallory.next_event({'sm_failed', 'session_resumed'}, "mallory's resume attempt")
    check(ev == 'sm_failed', "resuming another account's session fails")
    check(failed.xml.find('{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found') is not None,
          "with item-not-found")
    # bob's session is untouched: he still gets messages.
    mallory_ok = await mallory.next_event({'session_start'}, "mallory binds a fresh session")
    mallory.send_message(mto=jid(args, "bob") + "/phone", mbody="still here?", mtype="chat")
    check(await collect_bodies(bob, 1, "bob still receives") == ["still here?"], "bob's session was not disturbed")

    # bob, disconnected, tries a made-up id: failed, then a fresh session.
    bob.drop_tcp()
    await asyncio.sleep(0.3)
    bob['xep_0198'].sm_id = "made-up-session-id"
    await bob.reconnect_tcp()
    ev, _ = await bob.next_event({'sm_failed', 'session_resumed'}, "resume with an unknown id")
    check(ev == 'sm_failed', "an unknown id fails")
    await bob.next_event({'session_start'}, "bob binds a fresh session after the failure")
    await mallory.close()
    await bob.close()


async def sm_expired_scenario(args):
    # The server runs with a 1 s resume window.
    alice = Client(jid(args, "alice") + "/desk", pw("alice"), args)
    bob = SMClient(jid(args, "bob") + "/phone", pw("bob"), args)
    check(await alice.login(), "alice logged in")
    check(await bob.login(), "bob logged in")
    await bob.next_event({'sm_enabled'}, "stream management enabled")
    bob.drop_tcp()
    await asyncio.sleep(0.3)
    alice.send_message(mto=jid(args, "bob") + "/phone", mbody="sent during the window", mtype="chat")
    await asyncio.sleep(2.0)
    await bob.reconnect_tcp()
    ev, failed = await bob.next_event({'sm_failed', 'session_resumed'}, "late resume")
    check(ev == 'sm_failed', "resume after the window fails")
    check(failed.xml.get('h') == '2', f"the failure carries the server's last h: roster get and presence ({failed.xml.get('h')})")
    await bob.next_event({'session_start'}, "bob starts a fresh session")
    bob.send_presence()
    m = await next_matching(bob.messages, lambda m: m['body'] == "sent during the window",
                            "the message queued in the expired session comes from offline storage")
    check(m['delay']['stamp'] is not None, "it carries a delay stamp")
    await expect_quiet(bob.messages, 1.0, "and arrives only once")
    await alice.close()
    await bob.close()


SCENARIOS = {
    "sm-resume": sm_resume_scenario,
    "sm-bad-resume": sm_bad_resume_scenario,
    "sm-expired": sm_expired_scenario,
    "login": login_scenario,
    "wrong-password": wrong_password_scenario,
    "downgrade": downgrade_scenario,
    "chat": chat_scenario,
}


def run(scenarios):
    """Parse the command line and run one of scenarios (name -> coroutine)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(scenarios))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls-port", type=int, required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(scenarios[args.scenario](args), 120))
    except Fail as e:
        print("FAIL:", e, flush=True)
        sys.exit(1)
    print("PASS", args.scenario, flush=True)


if __name__ == "__main__":
    run(SCENARIOS)
