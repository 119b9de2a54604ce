// Package push will hold XEP-0357 push notifications on the server side and
// the built-in app server that forwards wake-ups to APNs and FCM. It is not
// implemented yet; see docs/compliance.md.
package push
