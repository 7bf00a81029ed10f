# The README's commands. `make test` needs only Go: tests that need PostgreSQL
# skip unless AGENTPLANE_TEST_DATABASE_URL is set (and fail under CI=true).
GO ?= go
GOTESTFLAGS ?=
# Packages with goroutines, locks or shared state: run under the race detector.
RACE_PKGS ?= ./internal/clock/... ./internal/supervise/... ./internal/events/... ./internal/store/... ./internal/app/... ./internal/api/... ./internal/auth/... ./internal/registry/... ./internal/gateway/... ./internal/scheduler/... ./internal/groupcommit/... ./internal/activity/... ./pkg/... ./cmd/...

.PHONY: test race vet fmt build run ci

test:
	$(GO) test $(GOTESTFLAGS) ./...

race:
	$(GO) test -race $(GOTESTFLAGS) $(RACE_PKGS)

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

build:
	$(GO) build -o agentplane ./cmd/agentplane

run:
	$(GO) run ./cmd/agentplane serve

ci:
	CI=true bash .ci/run
