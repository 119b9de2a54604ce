//go:build tools

// Package tools pins modules that the push gateway (APNs, FCM) and the
// metrics endpoint build on, so that go.mod names them before the code
// that imports them lands. It is never compiled into wren.
package tools

import (
	_ "firebase.google.com/go/v4/messaging"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/sideshow/apns2"
)
