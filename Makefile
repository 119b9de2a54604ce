# Wren — build, run and test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X wren.im/wren/server.Version=$(VERSION)
BIN     := bin/wren

.PHONY: all build run test test-unit test-interop vet fmt fuzz bench bench-archive bench-compare soak-idle clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/wren

# Serve on the embedded defaults: domain localhost, data in ./data,
# STARTTLS on 127.0.0.1:5222 and direct TLS on 127.0.0.1:5223.
run: build
	./$(BIN) serve

# Everything: static checks, unit tests with the race detector, and the
# interop tests that drive the real server with real client software.
test: vet
	$(MAKE) fuzz FUZZTIME=10s
	$(GO) test -race -count=1 -timeout 15m ./...

test-unit:
	$(GO) test -race -count=1 -short ./...

test-interop:
	$(GO) test -count=1 -v -timeout 15m ./tests/...

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Fuzz every parser that sees network input for FUZZTIME per target
# (make test runs them for 10s each; run longer locally, e.g.
# make fuzz FUZZTIME=10m). FuzzJID exercises the mellium jid library and
# is run by hand: it finds a known trailing-dot issue (docs/compliance.md).
FUZZTIME ?= 5m
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 0 ./xmpp
	$(GO) test -run '^$$' -fuzz '^FuzzStreamHeader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 0 ./xmpp
	$(GO) test -run '^$$' -fuzz '^FuzzScramServer$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 0 ./auth
	$(GO) test -run '^$$' -fuzz '^FuzzParseInfo$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 0 ./caps
	$(GO) test -run '^$$' -fuzz '^FuzzParseForm$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 0 ./adhoc

bench:
	$(GO) test -run '^$$' -bench . -skip '^BenchmarkArchivePage$$' -benchmem -count 5 ./xmpp ./auth ./storage/... ./router

# Page queries over a 1,000,000-message archive (the fill takes ~35 s).
bench-archive:
	$(GO) test -run '^$$' -bench '^BenchmarkArchivePage$$' -benchtime 2000x -count 3 ./storage/sqlite/

# 10,000 idle logged-in connections to the real binary, then a flood of
# logins; reports memory per connection and checks that descriptors and
# goroutines return to the baseline (make test runs it with 2,000).
soak-idle:
	WREN_IDLE_CONNS=10000 $(GO) test -count=1 -v -timeout 30m -run '^TestIdleConnectionsAndLoginFlood$$' ./tests/interop/

clean:
	rm -rf bin

# Side-by-side load comparison with Prosody and ejabberd (docs/performance.md);
# BENCH_QUICK=1 for a short run (~3 minutes), the full run takes ~15.
bench-compare:
	./bench/compare.sh
