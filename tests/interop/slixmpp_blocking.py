#!/usr/bin/python3
"""Blocking Command (XEP-0191) scenario driven with slixmpp's xep_0191 plugin.

Prints what it checks and exits non-zero on the first failure. Usage:
    slixmpp_blocking.py blocking --port P --tls-port T --domain D --ca FILE
The accounts alice and bob (password 'secret-<name>') must exist.
"""
import asyncio

import slixmpp
from slixmpp.exceptions import IqError

# Command line, Fail/check, the recording client and its helpers are shared
# with the core scenarios.
from slixmpp_scenarios import Client, Fail, check, expect_quiet, jid, next_matching, pw, run

BLOCKING = 'urn:xmpp:blocking'
BLOCKED = '{urn:xmpp:blocking:errors}blocked'
QUIET = 0.5  # seconds to wait when proving that something does not arrive


class BlockingClient(Client):
    """A recording client with service discovery and the blocking plugin."""

    def __init__(self, jid_, password, args):
        super().__init__(jid_, password, args)
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0191')
        self.chats = asyncio.Queue()    # messages that are not errors
        self.errors = asyncio.Queue()   # error messages
        self.pushes = asyncio.Queue()   # ('blocked' | 'unblocked', iq)
        self.add_event_handler('message', lambda m: m['type'] != 'error' and self.chats.put_nowait(m))
        self.add_event_handler('message_error', lambda m: self.errors.put_nowait(m))
        self.add_event_handler('blocked', lambda iq: self.pushes.put_nowait(('blocked', iq)))
        self.add_event_handler('unblocked', lambda iq: self.pushes.put_nowait(('unblocked', iq)))


def presence_from(bare, typ, show=None):
    def match(p):
        return p['from'].bare == bare and p['type'] == typ and (show is None or p['show'] == show)
    return match


async def subscribe(a, b, a_bare, b_bare):
    """a asks for b's presence and b approves."""
    a.send_presence(pto=b_bare, ptype="subscribe")
    await next_matching(b.subscriptions, lambda p: p['type'] == 'subscribe' and p['from'].bare == a_bare,
                        f"{b_bare} receives the subscription request")
    b.send_presence(pto=a_bare, ptype="subscribed")
    await next_matching(a.presences, presence_from(b_bare, 'available'), f"{a_bare} sees {b_bare} after approval")


async def blocking_scenario(args):
    alice_bare, bob_bare = jid(args, "alice"), jid(args, "bob")
    alice = BlockingClient(alice_bare + "/desk", pw("alice"), args)
    bob = BlockingClient(bob_bare + "/phone", pw("bob"), args)
    check(await alice.login(), "alice logged in")
    check(await bob.login(), "bob logged in")
    info = await alice['xep_0030'].get_info(jid=args.domain)
    check(BLOCKING in info['disco_info']['features'], "the server advertises urn:xmpp:blocking")

    await subscribe(alice, bob, alice_bare, bob_bare)
    await subscribe(bob, alice, bob_bare, alice_bare)
    check(True, "alice and bob are subscribed to each other")

    res = await alice['xep_0191'].get_blocked()
    check(res['blocklist']['items'] == set(), "alice's blocklist is empty")

    # alice blocks bob.
    await alice['xep_0191'].block(slixmpp.JID(bob_bare))
    kind, push = await next_matching(alice.pushes, lambda p: True, "the block push")
    check(kind == 'blocked' and push['block']['items'] == {slixmpp.JID(bob_bare)}, "alice got the block push naming bob")
    await next_matching(bob.presences, presence_from(alice_bare, 'unavailable'), "bob sees alice go unavailable")
    check(True, "bob sees alice go unavailable")
    await next_matching(alice.presences, presence_from(bob_bare, 'unavailable'), "alice sees bob go unavailable")
    check(not alice.client_roster.presence(bob_bare), "bob has no available resource in alice's roster")
    res = await alice['xep_0191'].get_blocked()
    check(res['blocklist']['items'] == {slixmpp.JID(bob_bare)}, "alice's blocklist holds bob")

    bob.send_message(mto=alice_bare, mbody="are you there?", mtype="chat")
    err = await next_matching(bob.errors, lambda m: m['from'].bare == alice_bare, "the error for bob's message")
    check(err['error']['condition'] == 'service-unavailable',
          f"bob's message to alice bounces with service-unavailable (got {err['error']['condition']})")
    try:
        await bob['xep_0030'].get_info(jid=alice_bare + "/desk")
        raise Fail("bob's disco#info query reached alice")
    except IqError as e:
        check(e.iq['error']['condition'] == 'service-unavailable', "bob's IQ to alice gets service-unavailable")

    alice.send_message(mto=bob_bare, mbody="psst", mtype="chat")
    err = await next_matching(alice.errors, lambda m: m['from'].bare == bob_bare, "the error for alice's message")
    check(err['error']['condition'] == 'not-acceptable' and err.xml.find('{jabber:client}error/' + BLOCKED) is not None,
          "alice's message to bob bounces with not-acceptable and <blocked/>")

    bob.send_presence(pshow="away")
    alice.send_presence(pshow="dnd")
    await expect_quiet(alice.chats, QUIET, "alice got a message from bob while he is blocked")
    await expect_quiet(bob.chats, QUIET, "bob got a message from alice while he is blocked")
    check(all(p['from'].bare != bob_bare for p in drain(alice.presences)), "alice sees no presence of bob while he is blocked")
    check(all(p['from'].bare != alice_bare for p in drain(bob.presences)), "bob sees no presence of alice")

    # alice unblocks bob: presence and messages flow again.
    await alice['xep_0191'].unblock(slixmpp.JID(bob_bare))
    kind, push = await next_matching(alice.pushes, lambda p: True, "the unblock push")
    check(kind == 'unblocked' and push['unblock']['items'] == {slixmpp.JID(bob_bare)}, "alice got the unblock push")
    await next_matching(bob.presences, presence_from(alice_bare, 'dnd'), "bob sees alice's current presence")
    check(True, "bob sees alice again, with her current show")
    await next_matching(alice.presences, presence_from(bob_bare, 'away'), "alice sees bob's current presence")
    check(True, "alice sees bob again, with his current show")

    bob.send_message(mto=alice_bare, mbody="hello again", mtype="chat")
    m = await next_matching(alice.chats, lambda m: m['body'] == "hello again", "bob's message after unblock")
    check(m['from'].bare == bob_bare, "alice receives bob's message again")
    alice.send_message(mto=bob_bare, mbody="welcome back", mtype="chat")
    await next_matching(bob.chats, lambda m: m['body'] == "welcome back", "alice's message after unblock")
    check(True, "bob receives alice's message again")
    check(alice.errors.empty() and bob.errors.empty(), "no errors after unblocking")

    await alice.close()
    await bob.close()


def drain(queue):
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


SCENARIOS = {
    "blocking": blocking_scenario,
}


if __name__ == "__main__":
    run(SCENARIOS)
