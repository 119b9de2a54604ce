#!/usr/bin/python3
"""Personal eventing scenarios: PEP (XEP-0163) over XEP-0060, with
interests announced by entity capabilities (XEP-0115), driven with
slixmpp's own plugins (xep_0060, xep_0163, xep_0115, xep_0084).

Each scenario prints what it checks and exits non-zero on the first
failure. Usage:
    slixmpp_pep.py SCENARIO --port P --tls-port T --domain D --ca FILE
The accounts alice, bob, carol and dave (password 'secret-<name>') must
exist and have empty rosters.
"""
import asyncio
import time

import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET

# Command line, Fail/check and account helpers are shared with the core scenarios.
from slixmpp_scenarios import Fail, check, jid, pw, run

TIMEOUT = 20
PUBSUB = 'http://jabber.org/protocol/pubsub'
DEVICELIST = 'eu.siacs.conversations.axolotl.devicelist'
AXOLOTL = 'eu.siacs.conversations.axolotl'
BOOKMARKS = 'urn:xmpp:bookmarks:1'
AVATAR_META = 'urn:xmpp:avatar:metadata'


class Client(slixmpp.ClientXMPP):
    """A client with the PEP plugins that records the events it receives."""

    def __init__(self, jid, password, args, interests=()):
        super().__init__(jid, password)
        self.args = args
        self.ca_certs = args.ca
        for plugin in ('xep_0004', 'xep_0030', 'xep_0060', 'xep_0115', 'xep_0163', 'xep_0084'):
            self.register_plugin(plugin)
        for ns in interests:
            self['xep_0163'].add_interest(ns)
        self.events = asyncio.Queue()
        self.subscriptions = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.auto_authorize = None
        self.auto_subscribe = False
        self.session_started = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self._on_start)
        self.add_event_handler('failed_all_auth', self._on_failed)
        self.add_event_handler('pubsub_publish', lambda m: self.events.put_nowait(('publish', m)))
        self.add_event_handler('pubsub_retract', lambda m: self.events.put_nowait(('retract', m)))
        self.add_event_handler('presence_subscribe', lambda p: self.subscriptions.put_nowait(p))
        self.add_event_handler('presence_subscribed', lambda p: self.subscriptions.put_nowait(p))
        self.add_event_handler('presence_available', lambda p: self.presences.put_nowait(p))

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
        await self.get_roster()
        # Compute the caps of every interest registered so far (plugins
        # add theirs at session start) before the presence announces them.
        await self['xep_0115'].update_caps(broadcast=False)
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


async def no_event(client, node, what):
    """Check that no event about node is waiting for client, after a round
    trip to the server (which has by then sent everything caused before)."""
    await client['xep_0030'].get_info(jid=client.boundjid.domain)
    while not client.events.empty():
        _, msg = client.events.get_nowait()
        if msg['pubsub_event']['items']['node'] == node:
            raise Fail(f"unexpected {what}: {msg}")
    print("ok: no", what, flush=True)


def event_of(node, kind='publish'):
    return lambda e: e[0] == kind and e[1]['pubsub_event']['items']['node'] == node


async def befriend(a, b):
    """Mutual presence subscription between a and b, by the protocol."""
    for x, y in ((a, b), (b, a)):
        x.send_presence(pto=y.boundjid.bare, ptype='subscribe')
        await next_matching(y.subscriptions, lambda p: p['type'] == 'subscribe' and p['from'].bare == x.boundjid.bare,
                            f"{y.boundjid.bare} receives {x.boundjid.bare}'s request")
        y.send_presence(pto=x.boundjid.bare, ptype='subscribed')
        await next_matching(x.subscriptions, lambda p: p['type'] == 'subscribed' and p['from'].bare == y.boundjid.bare,
                            f"{x.boundjid.bare} sees the approval")
    await next_matching(a.presences, lambda p: p['from'].bare == b.boundjid.bare, f"{a.boundjid.bare} sees {b.boundjid.bare} online")
    await next_matching(b.presences, lambda p: p['from'].bare == a.boundjid.bare, f"{b.boundjid.bare} sees {a.boundjid.bare} online")


def options(client, **fields):
    form = client['xep_0004'].make_form(ftype='submit')
    form.add_field(var='FORM_TYPE', ftype='hidden', value=PUBSUB + '#publish-options')
    for k, v in fields.items():
        form.add_field(var='pubsub#' + k, value=v)
    return form


def devicelist(*ids):
    el = ET.Element(f'{{{AXOLOTL}}}list')
    for i in ids:
        ET.SubElement(el, f'{{{AXOLOTL}}}device', id=str(i))
    return el


async def error_of(coro):
    try:
        await coro
    except IqError as e:
        return e.iq['error']['condition'], e.iq['error'].xml
    return None, None


async def devicelist_scenario(args):
    alice = Client(jid(args, "alice") + "/phone", pw("alice"), args, interests=[DEVICELIST])
    bob = Client(jid(args, "bob") + "/pc", pw("bob"), args, interests=[DEVICELIST])
    carol = Client(jid(args, "carol") + "/pc", pw("carol"), args, interests=[DEVICELIST])
    dave = Client(jid(args, "dave") + "/pc", pw("dave"), args)  # no devicelist+notify
    for c in (alice, bob, carol, dave):
        await c.login()
    info = await alice['xep_0030'].get_info(jid=alice.boundjid.bare)
    check(any(i[0] == 'pubsub' and i[1] == 'pep' for i in info['disco_info']['identities']),
          "alice's account is a PEP service (pubsub/pep identity)")
    for f in ('#publish', '#publish-options', '#auto-create', '#filtered-notifications'):
        check(PUBSUB + f in info['disco_info']['features'], f"the account advertises {PUBSUB + f}")
    await befriend(alice, bob)
    await befriend(alice, dave)
    check(True, "alice has bob and dave as contacts; carol is a stranger")

    # OMEMO publishes its device list with open access (as Conversations does).
    await alice['xep_0060'].publish(alice.boundjid.bare, DEVICELIST, id='current',
                                    payload=devicelist(11, 22), options=options(alice, access_model='open'))
    _, msg = await next_matching(bob.events, event_of(DEVICELIST), "bob's device list notification")
    item = msg['pubsub_event']['items']['substanzas'][0]
    ids = sorted(d.get('id') for d in item.xml.iter(f'{{{AXOLOTL}}}device'))
    check(str(msg['from']) == alice.boundjid.bare and ids == ['11', '22'],
          "bob (subscribed, devicelist+notify) gets alice's device list from her bare JID")
    await next_matching(alice.events, event_of(DEVICELIST), "alice's own notification")
    check(True, "alice's own resource gets the notification")
    await no_event(carol, DEVICELIST, "notification for the stranger carol")
    await no_event(dave, DEVICELIST, "notification for dave, whose client did not ask")

    # Open access: carol may still fetch the list (OMEMO with strangers).
    res = await carol['xep_0060'].get_items(alice.boundjid.bare, DEVICELIST)
    check(len(res['pubsub']['items']) == 1, "carol can retrieve the open device list")

    # The precondition fails against a node with another configuration.
    cond, err = await error_of(alice['xep_0060'].publish(alice.boundjid.bare, DEVICELIST, id='current',
                                                        payload=devicelist(11), options=options(alice, access_model='whitelist')))
    check(cond == 'conflict' and err.find(f'{{{PUBSUB}#errors}}precondition-not-met') is not None,
          "publish-options that do not match the node fail with precondition-not-met")
    cond, _ = await error_of(bob['xep_0060'].publish(alice.boundjid.bare, DEVICELIST, id='current', payload=devicelist(666)))
    check(cond == 'forbidden', "bob cannot publish to alice's node")
    for c in (alice, bob, carol, dave):
        await c.close()


async def bookmarks_scenario(args):
    phone = Client(jid(args, "alice") + "/phone", pw("alice"), args, interests=[BOOKMARKS])
    desk = Client(jid(args, "alice") + "/desk", pw("alice"), args, interests=[BOOKMARKS])
    bob = Client(jid(args, "bob") + "/pc", pw("bob"), args, interests=[BOOKMARKS])
    for c in (phone, desk, bob):
        await c.login()
    await befriend(phone, bob)
    conf = ET.Element(f'{{{BOOKMARKS}}}conference', name='Tea room', autojoin='true')
    ET.SubElement(conf, f'{{{BOOKMARKS}}}nick').text = 'alice'
    # XEP-0402 §3: private, persistent, as many items as allowed.
    await phone['xep_0060'].publish(phone.boundjid.bare, BOOKMARKS, id='tea@conference.' + args.domain, payload=conf,
                                    options=options(phone, persist_items='true', max_items='max',
                                                    send_last_published_item='never', access_model='whitelist'))
    _, msg = await next_matching(desk.events, event_of(BOOKMARKS), "the bookmark on alice's desk")
    check(msg['pubsub_event']['items']['substanzas'][0]['id'] == 'tea@conference.' + args.domain,
          "alice's other resource gets the new bookmark")
    await no_event(bob, BOOKMARKS, "bookmark notification for bob")
    cond, _ = await error_of(bob['xep_0060'].get_items(phone.boundjid.bare, BOOKMARKS))
    check(cond == 'not-allowed', f"bob cannot read alice's bookmarks (got {cond})")
    res = await desk['xep_0060'].get_items(desk.boundjid.bare, BOOKMARKS)
    check(len(res['pubsub']['items']) == 1, "alice's desk reads her bookmarks")

    # A new device syncs the bookmarks; send_last_published_item=never
    # means they are not pushed at login.
    laptop = Client(jid(args, "alice") + "/laptop", pw("alice"), args, interests=[BOOKMARKS])
    await laptop.login()
    await no_event(laptop, BOOKMARKS, "bookmark pushed at login despite send_last_published_item=never")
    res = await laptop['xep_0060'].get_items(laptop.boundjid.bare, BOOKMARKS)
    check(len(res['pubsub']['items']) == 1, "the new device fetches the bookmarks")

    await phone['xep_0060'].retract(phone.boundjid.bare, BOOKMARKS, 'tea@conference.' + args.domain, notify=True)
    await next_matching(desk.events, event_of(BOOKMARKS, 'retract'), "the retraction on alice's desk")
    check(True, "removing a bookmark (retract notify=true) reaches the other resources")
    for c in (phone, desk, bob, laptop):
        await c.close()


async def avatar_scenario(args):
    alice = Client(jid(args, "alice") + "/phone", pw("alice"), args)
    bob = Client(jid(args, "bob") + "/pc", pw("bob"), args)  # xep_0084 asks for avatar metadata
    for c in (alice, bob):
        await c.login()
    await befriend(alice, bob)
    data = bytes(range(256)) * 8
    avatar_id = alice['xep_0084'].generate_id(data)
    await alice['xep_0084'].publish_avatar(data)
    await alice['xep_0084'].publish_avatar_metadata({'id': avatar_id, 'type': 'image/png', 'bytes': len(data)})
    _, msg = await next_matching(bob.events, event_of(AVATAR_META), "bob's avatar metadata notification")
    info = msg['pubsub_event']['items']['substanzas'][0]['avatar_metadata']['info']
    check(info['id'] == avatar_id and int(info['bytes']) == len(data), "bob is notified of alice's new avatar")
    res = await bob['xep_0084'].retrieve_avatar(alice.boundjid.bare, avatar_id)
    got = res['pubsub']['items']['substanzas'][0]['avatar_data']['value']
    check(got == data, "bob downloads the avatar data and it matches")

    # Last item: bob's next session gets the current metadata at login
    # without asking.
    await bob.close()
    bob2 = Client(jid(args, "bob") + "/tablet", pw("bob"), args)
    await bob2.login()
    _, msg = await next_matching(bob2.events, event_of(AVATAR_META), "the last avatar metadata at login")
    check(msg['pubsub_event']['items']['substanzas'][0]['id'] == avatar_id,
          "a contact coming online gets the last published avatar metadata")
    for c in (alice, bob2):
        await c.close()


SCENARIOS = {
    "devicelist": devicelist_scenario,
    "bookmarks": bookmarks_scenario,
    "avatar": avatar_scenario,
}


if __name__ == "__main__":
    run(SCENARIOS)
