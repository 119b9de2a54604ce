#!/usr/bin/python3
"""Multi-device history scenarios: Message Carbons (XEP-0280) and Message
Archive Management (XEP-0313) driven with slixmpp's own plugins.

Each scenario prints what it checks and exits non-zero on the first
failure. Usage:
    slixmpp_history.py SCENARIO --port P --tls-port T --domain D --ca FILE
The accounts alice, bob and carol (password 'secret-<name>') must exist.
"""
import asyncio
import time

import slixmpp

# Command line, Fail/check and account helpers are shared with the core scenarios.
from slixmpp_scenarios import Fail, check, jid, pw, run

TIMEOUT = 20
SID = 'urn:xmpp:sid:0'


class Client(slixmpp.ClientXMPP):
    """A client with the history plugins that records what it receives."""

    def __init__(self, jid, password, args):
        super().__init__(jid, password)
        self.args = args
        self.ca_certs = args.ca
        for plugin in ('xep_0030', 'xep_0059', 'xep_0203', 'xep_0280', 'xep_0297', 'xep_0313', 'xep_0359'):
            self.register_plugin(plugin)
        self.messages = asyncio.Queue()
        self.received_carbons = asyncio.Queue()
        self.sent_carbons = asyncio.Queue()
        self.session_started = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self._on_start)
        self.add_event_handler('failed_all_auth', self._on_failed)
        self.add_event_handler('message', self._on_message)
        self.add_event_handler('carbon_received', lambda m: self.received_carbons.put_nowait(m))
        self.add_event_handler('carbon_sent', lambda m: self.sent_carbons.put_nowait(m))

    def _on_message(self, m):
        # Carbons and archive results have their own events or collectors.
        if m.xml.find('{urn:xmpp:carbons:2}received') is not None or \
                m.xml.find('{urn:xmpp:carbons:2}sent') is not None or \
                m.xml.find('{urn:xmpp:mam:2}result') is not None:
            return
        if m['body']:
            self.messages.put_nowait(m)

    async def _on_start(self, _):
        if not self.session_started.done():
            self.session_started.set_result(True)

    def _on_failed(self, _):
        if not self.session_started.done():
            self.session_started.set_result(False)

    async def login(self):
        self.connect(address=('127.0.0.1', self.args.port), force_starttls=True)
        ok = await asyncio.wait_for(self.session_started, TIMEOUT)
        if not ok:
            raise Fail(f"{self.boundjid} could not log in")
        self.send_presence()
        return ok

    async def close(self):
        done = asyncio.get_event_loop().create_future()
        self.add_event_handler('disconnected', lambda _: done.done() or done.set_result(True))
        self.disconnect()
        try:
            await asyncio.wait_for(done, 5)
        except asyncio.TimeoutError:
            raise Fail("the server did not close the stream after </stream:stream>")


async def take(queue, n, what):
    """Take n items from queue, failing if they do not all arrive in time."""
    out = []
    deadline = time.monotonic() + TIMEOUT
    while len(out) < n:
        left = deadline - time.monotonic()
        try:
            out.append(await asyncio.wait_for(queue.get(), max(left, 0.01)))
        except asyncio.TimeoutError:
            raise Fail(f"timed out waiting for {what}: got {len(out)} of {n}")
    return out


async def quiet(queue, seconds, what):
    try:
        item = await asyncio.wait_for(queue.get(), seconds)
    except asyncio.TimeoutError:
        print("ok: no", what, flush=True)
        return
    raise Fail(f"unexpected {what}: {item}")


def stanza_ids(msg, by):
    return [e.get('id') for e in msg.xml.findall(f'{{{SID}}}stanza-id') if e.get('by') == by]


async def carbons_scenario(args):
    alice_bare = jid(args, "alice")
    phone = Client(alice_bare + "/phone", pw("alice"), args)
    desk = Client(alice_bare + "/desk", pw("alice"), args)
    bob = Client(jid(args, "bob") + "/pc", pw("bob"), args)
    for c in (phone, desk, bob):
        await c.login()
    info = await desk['xep_0030'].get_info(jid=args.domain)
    check('urn:xmpp:carbons:2' in info['disco_info']['features'], "the server advertises carbons")
    await phone['xep_0280'].enable()
    await desk['xep_0280'].enable()
    check(True, "both of alice's resources enabled carbons")

    # Received: bob writes to the phone; the desk sees a copy.
    n = 20
    for i in range(n):
        bob.send_message(mto=alice_bare + "/phone", mbody=f"in{i:02d}", mtype="chat")
    got = await take(phone.messages, n, "bob's messages on the phone")
    check([m['body'] for m in got] == [f"in{i:02d}" for i in range(n)], "the phone got bob's messages in order")
    carbons = await take(desk.received_carbons, n, "received carbons on the desk")
    inner = [c['carbon_received'] for c in carbons]
    check([m['body'] for m in inner] == [f"in{i:02d}" for i in range(n)], "the desk got a received carbon of each, in order")
    check(all(str(m['to']) == alice_bare + "/phone" and m['from'].bare == jid(args, "bob") for m in inner),
          "each carbon forwards the original message")
    ids_phone = [stanza_ids(m, alice_bare) for m in got]
    ids_desk = [stanza_ids(m, alice_bare) for m in inner]
    check(all(len(i) == 1 for i in ids_phone) and ids_phone == ids_desk,
          "message and carbon carry the same stanza-id of alice's archive")
    await quiet(phone.received_carbons, 0.5, "carbon on the resource that got the message")

    # Sent: the phone writes to bob; the desk sees a copy, bob the message.
    for i in range(n):
        phone.send_message(mto=jid(args, "bob"), mbody=f"out{i:02d}", mtype="chat")
    got = await take(bob.messages, n, "alice's messages at bob")
    check([m['body'] for m in got] == [f"out{i:02d}" for i in range(n)], "bob got alice's messages")
    check(all(not stanza_ids(m, alice_bare) for m in got), "bob does not see ids of alice's archive")
    sent = await take(desk.sent_carbons, n, "sent carbons on the desk")
    inner = [c['carbon_sent'] for c in sent]
    check([m['body'] for m in inner] == [f"out{i:02d}" for i in range(n)], "the desk got a sent carbon of each")
    check(all(len(stanza_ids(m, alice_bare)) == 1 for m in inner), "sent carbons carry the archive id")
    await quiet(phone.sent_carbons, 0.5, "sent carbon back to the sending resource")

    # Private messages are not copied; disable stops the copies.
    msg = phone.make_message(mto=jid(args, "bob"), mbody="private", mtype="chat")
    msg.xml.append(slixmpp.xmlstream.ET.Element('{urn:xmpp:carbons:2}private'))
    msg.send()
    await take(bob.messages, 1, "the private message")
    await quiet(desk.sent_carbons, 0.5, "carbon of a <private/> message")
    await desk['xep_0280'].disable()
    bob.send_message(mto=alice_bare + "/phone", mbody="after disable", mtype="chat")
    await take(phone.messages, 1, "the message after disable")
    await quiet(desk.received_carbons, 0.5, "carbon after disable")
    for c in (phone, desk, bob):
        await c.close()


async def collect(client, **kwargs):
    """Page through the archive with the xep_0313 iterator."""
    out = []
    async for m in client['xep_0313'].iterate(jid=slixmpp.JID(client.boundjid.bare), **kwargs):
        inner = m['mam_result']['forwarded']['stanza']
        out.append((m['mam_result']['id'], inner['body'], m['mam_result']['forwarded']['delay']['stamp']))
    return out


async def mam_scenario(args):
    alice_bare = jid(args, "alice")
    alice = Client(alice_bare + "/phone", pw("alice"), args)
    bob = Client(jid(args, "bob") + "/pc", pw("bob"), args)
    carol = Client(jid(args, "carol") + "/tab", pw("carol"), args)
    for c in (alice, bob, carol):
        await c.login()
    # Three phases so that the archive order is known: 120 from bob, 100
    # from carol, 80 from alice to bob.
    nb, nc, na = 120, 100, 80
    for i in range(nb):
        bob.send_message(mto=alice_bare, mbody=f"b{i:03d}", mtype="chat")
    from_bob = await take(alice.messages, nb, "bob's messages")
    for i in range(nc):
        carol.send_message(mto=alice_bare, mbody=f"c{i:03d}", mtype="chat")
    await take(alice.messages, nc, "carol's messages")
    for i in range(na):
        alice.send_message(mto=jid(args, "bob"), mbody=f"a{i:03d}", mtype="chat")
    await take(bob.messages, na, "alice's messages at bob")
    expected = [f"b{i:03d}" for i in range(nb)] + [f"c{i:03d}" for i in range(nc)] + [f"a{i:03d}" for i in range(na)]
    check(True, f"{len(expected)} messages exchanged")

    # A new device syncs the whole archive.
    laptop = Client(alice_bare + "/laptop", pw("alice"), args)
    await laptop.login()
    info = await laptop['xep_0030'].get_info(jid=alice_bare)
    features = info['disco_info']['features']
    check('urn:xmpp:mam:2' in features and 'urn:xmpp:mam:2#extended' in features, "the account advertises MAM")

    forward = await collect(laptop, rsm={'max': 50})
    check([b for _, b, _ in forward] == expected, f"forward paging by 50 returns all {len(expected)} messages in order")
    ids = [i for i, _, _ in forward]
    check(len(set(ids)) == len(ids), "archive ids are unique")
    check([stanza_ids(m, alice_bare)[0] for m in from_bob] == ids[:nb],
          "the stanza-ids delivered live are the archive ids")
    stamps = [s for _, _, s in forward]
    check(all(a < b for a, b in zip(stamps, stamps[1:])), "stamps increase along the archive")

    backward = await collect(laptop, rsm={'max': 40}, reverse=True)
    check([b for _, b, _ in backward] == expected[::-1], "backward paging by 40 returns them newest first")

    with_carol = await collect(laptop, with_jid=slixmpp.JID(jid(args, "carol")), rsm={'max': 30})
    check([b for _, b, _ in with_carol] == expected[nb:nb + nc], "with carol: her 100 messages")
    with_bob = await collect(laptop, with_jid=slixmpp.JID(jid(args, "bob")), rsm={'max': 30}, reverse=True)
    check([b for _, b, _ in with_bob] == (expected[:nb] + expected[nb + nc:])[::-1],
          "with bob, backwards: both directions of the conversation")

    ranged = await collect(laptop, start=stamps[nb], end=stamps[nb + nc - 1], rsm={'max': 25})
    check([b for _, b, _ in ranged] == expected[nb:nb + nc], "start/end select exactly the messages in the range")
    ranged = await collect(laptop, start=stamps[nb + 10], with_jid=slixmpp.JID(jid(args, "bob")), rsm={'max': 25})
    check([b for _, b, _ in ranged] == expected[nb + nc:], "start with a contact filter")
    ranged = await collect(laptop, end=stamps[9], rsm={'max': 25}, reverse=True)
    check([b for _, b, _ in ranged] == expected[:10][::-1], "end alone, paged backwards")

    # One large page is capped by the server and says it is incomplete.
    res = await laptop['xep_0313'].retrieve(jid=slixmpp.JID(alice_bare), rsm={'max': 1000})
    got = res['mam']['results']
    check(0 < len(got) < len(expected) and res['mam_fin'].xml.get('complete') != 'true',
          f"a page asking for 1000 is capped ({len(got)}) and not complete")
    res = await laptop['xep_0313'].retrieve(jid=slixmpp.JID(alice_bare), with_jid=slixmpp.JID(jid(args, "carol")), rsm={'max': 250})
    check(len(res['mam']['results']) == nc and res['mam_fin'].xml.get('complete') == 'true', "the last page is complete")
    for c in (alice, bob, carol, laptop):
        await c.close()


SCENARIOS = {
    "carbons": carbons_scenario,
    "mam": mam_scenario,
}


if __name__ == "__main__":
    run(SCENARIOS)
