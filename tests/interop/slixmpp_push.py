#!/usr/bin/python3
"""Push notification scenario: a phone (bob/phone) registers with Wren's
built-in push gateway by ad-hoc command (XEP-0050, slixmpp's xep_0050
plugin), enables push on its server (XEP-0357: Debian's slixmpp has no
xep_0357 plugin, so raw IQs) and goes away, cleanly or by losing its TCP
connection with stream management (XEP-0198) on, while alice writes to it.

The Go side (push_test.go) runs the mock FCM and APNs services, checks what
they receive and runs the wren commands. The two sides take turns over
stdin and stdout:
    AWAIT STEP      the script waits for a line; "go" continues, anything
                    else (or the end of input) fails the scenario
    SENT STEP TIME  alice is about to send a burst, at TIME (UNIX seconds)
Usage:
    slixmpp_push.py gateway --port P --tls-port T --domain D --ca FILE
The accounts alice and bob (password 'secret-<name>') must exist.
"""
import asyncio
import sys
import time

import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET

# Command line, Fail/check and account helpers are shared with the core scenarios.
from slixmpp_scenarios import Fail, check, jid, pw, run

TIMEOUT = 20
PUSH = 'urn:xmpp:push:0'
DATA = 'jabber:x:data'
COMMANDS = 'http://jabber.org/protocol/commands'
PUBLISH_OPTIONS = 'http://jabber.org/protocol/pubsub#publish-options'

# Known to push_test.go too.
FCM_TOKEN = 'fcm-token-bob-0123456789'
FCM_DEVICE = 'android-bob'
APNS_TOKEN = '00aa11bb22cc33dd44ee55ff66778899'
APNS_DEVICE = 'ios-bob'


class Client(slixmpp.ClientXMPP):
    """A client with the ad-hoc commands plugin, and optionally stream
    management, that records the messages it receives."""

    def __init__(self, jid_, password, args, sm=False):
        super().__init__(jid_, password)
        self.args = args
        self.ca_certs = args.ca
        for plugin in ('xep_0004', 'xep_0030', 'xep_0050'):
            self.register_plugin(plugin)
        self.events = asyncio.Queue()
        if sm:
            self.register_plugin('xep_0198')
            for ev in ('sm_enabled', 'session_resumed', 'sm_failed'):
                self.add_event_handler(ev, lambda e, ev=ev: self.events.put_nowait(ev))
        self.messages = asyncio.Queue()
        self.session_started = asyncio.get_event_loop().create_future()
        self.add_event_handler('session_start', self._on_start)
        self.add_event_handler('failed_all_auth', self._on_failed)
        self.add_event_handler('message', lambda m: m['body'] and self.messages.put_nowait(m['body']))

    async def _on_start(self, _):
        if not self.session_started.done():
            self.session_started.set_result(True)

    def _on_failed(self, _):
        if not self.session_started.done():
            self.session_started.set_result(False)

    async def login(self):
        self.connect(address=('127.0.0.1', self.args.port), force_starttls=True)
        if not await asyncio.wait_for(self.session_started, TIMEOUT):
            raise Fail(f"{self.boundjid} could not log in")
        self.send_presence()

    async def close(self):
        """End the stream politely and wait (bounded) for the server to close."""
        done = asyncio.get_event_loop().create_future()
        self.add_event_handler('disconnected', lambda _: done.done() or done.set_result(True))
        self.disconnect()
        try:
            await asyncio.wait_for(done, 5)
        except asyncio.TimeoutError:
            raise Fail("the server did not close the stream after </stream:stream>")

    async def next_event(self, names, what):
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                ev = await asyncio.wait_for(self.events.get(), max(deadline - time.monotonic(), 0.01))
            except asyncio.TimeoutError:
                raise Fail("timed out waiting for " + what)
            if ev in names:
                return ev

    async def take(self, n, what):
        """The bodies of the next n messages."""
        out = []
        deadline = time.monotonic() + TIMEOUT
        while len(out) < n:
            try:
                out.append(await asyncio.wait_for(self.messages.get(), max(deadline - time.monotonic(), 0.01)))
            except asyncio.TimeoutError:
                raise Fail(f"timed out waiting for {what}: got {out}")
        return out

    async def settle_acks(self):
        """Acknowledge what the server sent, and make sure it read the
        acknowledgement (a round trip after it) before the connection goes."""
        self['xep_0198'].send_ack()
        await self['xep_0030'].get_info(jid=self.args.domain, timeout=TIMEOUT)

    def drop_tcp(self):
        """Cut the TCP connection without closing the XMPP stream."""
        self.transport.abort()


def form(client, fields):
    f = client['xep_0004'].make_form(ftype='submit')
    for var, value in fields.items():
        f.add_field(var=var, value=value)
    return f


async def register(client, gateway, node, fields):
    """Register a device in one stage, as Conversations does; returns the
    node and secret of the result form."""
    resp = await client['xep_0050'].send_command(gateway, node, payload=form(client, fields), timeout=TIMEOUT)
    check(resp['command']['status'] == 'completed', f"{node} completed in one stage")
    values = resp['command']['form'].get_values()
    check(values.get('jid') == gateway and values.get('node') and values.get('secret'),
          f"{node} answered the gateway's jid, a node and a secret")
    return values['node'], values['secret']


async def register_multistage(client, gateway, node, fields):
    """Register a device in two stages: the blank form, then complete."""
    resp = await client['xep_0050'].send_command(gateway, node, timeout=TIMEOUT)
    cmd = resp['command']
    blank = cmd['form']
    check(cmd['status'] == 'executing' and cmd['sessionid'] and 'token' in blank.get_fields(),
          f"{node} opened a session with a form asking for the token")
    resp = await client['xep_0050'].send_command(gateway, node, action='complete', sessionid=cmd['sessionid'],
                                                 payload=form(client, fields), timeout=TIMEOUT)
    check(resp['command']['status'] == 'completed', f"{node} completed in the second stage")
    values = resp['command']['form'].get_values()
    return values['node'], values['secret']


async def push_iq(client, op, gateway, node, secret=None):
    """Send <enable/> or <disable/> (XEP-0357) to the account."""
    iq = client.Iq()
    iq['type'] = 'set'
    el = ET.Element(f'{{{PUSH}}}{op}', jid=gateway, node=node)
    if secret is not None:
        x = ET.SubElement(el, f'{{{DATA}}}x', type='submit')
        for var, value in (('FORM_TYPE', PUBLISH_OPTIONS), ('secret', secret)):
            f = ET.SubElement(x, f'{{{DATA}}}field', var=var)
            ET.SubElement(f, f'{{{DATA}}}value').text = value
    iq.xml.append(el)
    try:
        await iq.send(timeout=TIMEOUT)
    except IqError as e:
        raise Fail(f"<{op}/> was refused: {e.iq['error']['condition']} {e.iq['error']['text']}")
    check(True, f"the server accepted <{op}/>")


async def await_go(step):
    """Tell the Go side that step is reached and wait for its go-ahead."""
    print("AWAIT", step, flush=True)
    line = await asyncio.get_event_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        raise Fail(f"the test stopped at {step} ({line.strip()!r})")


def burst(alice, bob, step, bodies):
    """Alice sends bodies to bob, one burst; the send time goes to Go."""
    print("SENT", step, f"{time.time():.6f}", flush=True)
    for body in bodies:
        alice.send_message(mto=bob, mbody=body, mtype='chat')


async def gateway_scenario(args):
    gateway = 'push.' + args.domain
    bob_jid = jid(args, 'bob')
    phone = bob_jid + '/phone'
    alice = Client(jid(args, 'alice') + '/desk', pw('alice'), args)
    await alice.login()

    # The phone finds the gateway, registers with it and enables push.
    bob = Client(phone, pw('bob'), args)
    await bob.login()
    info = await bob['xep_0030'].get_info(jid=gateway, timeout=TIMEOUT)
    identities = [(i[0], i[1]) for i in info['disco_info']['identities']]
    check(('pubsub', 'push') in identities and COMMANDS in info['disco_info']['features'],
          "the gateway is a pubsub/push service with ad-hoc commands")
    items = await bob['xep_0050'].get_commands(gateway, timeout=TIMEOUT)
    nodes = {i[1] for i in items['disco_items']['items']}
    check({'register-push-fcm', 'register-push-apns', 'unregister-push'} <= nodes,
          f"the gateway lists its registration commands ({sorted(nodes)})")
    node, secret = await register(bob, gateway, 'register-push-fcm', {'token': FCM_TOKEN, 'android-id': FCM_DEVICE})
    again = await register(bob, gateway, 'register-push-fcm', {'token': FCM_TOKEN, 'android-id': FCM_DEVICE})
    check(again == (node, secret), "registering again (as apps do at every start) keeps the node and the secret")
    apns_node, _ = await register_multistage(bob, gateway, 'register-push-apns',
                                             {'token': APNS_TOKEN, 'device-id': APNS_DEVICE})
    check(apns_node != node, "the iOS device got its own node")
    await push_iq(bob, 'enable', gateway, node, secret)
    await await_go("registered")  # Go: wren push devices, wren push test

    # Case 1: the phone goes offline cleanly; one push per burst.
    await bob.close()
    await await_go("offline")  # Go: waits until bob has no session
    burst(alice, bob_jid, "offline", ["are you there?", "hello?"])
    await await_go("offline-pushed")  # Go: exactly one push

    # Case 2: the phone enables stream management and loses its connection.
    bob = Client(phone, pw('bob'), args, sm=True)
    await bob.login()
    await bob.next_event({'sm_enabled'}, "stream management enabled")
    got = await bob.take(2, "the messages stored while bob was offline")
    check(got == ["are you there?", "hello?"], "bob got the messages stored while offline")
    await bob.settle_acks()
    bob.drop_tcp()
    await await_go("hibernated")  # Go: waits until bob's session hibernates
    burst(alice, bob_jid, "hibernated", ["wake up", "still there?"])
    await await_go("hibernated-pushed")  # Go: exactly one push
    bob.connect(address=('127.0.0.1', args.port), force_starttls=True)
    ev = await bob.next_event({'session_resumed', 'sm_failed'}, "bob resumes")
    check(ev == 'session_resumed', "the woken phone resumed its session")
    got = await bob.take(2, "the messages queued while bob was away")
    check(got == ["wake up", "still there?"], "bob got the messages queued in the hibernated session")
    await bob.settle_acks()
    await bob.close()

    # Case 3: FCM answers 503 once; the gateway retries.
    await await_go("retry")  # Go: waits until bob has no session, scripts the 503
    burst(alice, bob_jid, "retry", ["through a 503"])
    await await_go("retry-pushed")  # Go: a 503, then the delivery

    # <disable/> stops the pushes.
    bob = Client(phone, pw('bob'), args)
    await bob.login()
    check(await bob.take(1, "the message stored during the retry") == ["through a 503"], "bob got the message pushed after a retry")
    await push_iq(bob, 'disable', gateway, node)
    await bob.close()
    await await_go("disabled")  # Go: waits until bob has no session
    burst(alice, bob_jid, "disabled", ["nobody listens"])
    await await_go("disabled-quiet")  # Go: no push

    # A dead token: the gateway forgets the device and the server disables
    # the registration.
    bob = Client(phone, pw('bob'), args)
    await bob.login()
    check(await bob.take(1, "the message sent after disable") == ["nobody listens"], "bob got the message sent after disable")
    resp = await bob['xep_0050'].send_command(gateway, 'unregister-push', payload=form(bob, {'device-id': APNS_DEVICE}), timeout=TIMEOUT)
    check(resp['command']['status'] == 'completed', "the iOS device unregistered")
    await push_iq(bob, 'enable', gateway, node, secret)
    await bob.close()
    await await_go("dead")  # Go: waits until bob has no session, makes the token dead
    burst(alice, bob_jid, "dead", ["to a dead phone"])
    await await_go("dead-pushed")  # Go: the push answered UNREGISTERED, the device gone
    burst(alice, bob_jid, "after-dead", ["nobody home"])
    await await_go("after-dead-quiet")  # Go: no push
    await alice.close()


SCENARIOS = {'gateway': gateway_scenario}

if __name__ == "__main__":
    run(SCENARIOS)
