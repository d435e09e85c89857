# ringgate: `make run` serves config.example.yaml on an embedded store; `make test` runs every test.
GO      ?= go
BIN     := bin/ringgate
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/ringgate/ringgate/gateway.Version=$(VERSION)
CONFIG  ?= config.example.yaml

.DEFAULT_GOAL := help
.PHONY: help build deps plugins run test bench demo cluster-demo lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

build: ## build bin/ringgate
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ringgate

deps: ## install the test tools Go does not bring: wabt (wat2wasm) and chromium (Debian packages)
	./scripts/deps.sh

plugins: ## build the example transforms: Go (wasip1), WAT (wabt's wat2wasm), AssemblyScript (npm)
	GOOS=wasip1 GOARCH=wasm GOWASM=satconv,signext $(GO) build -buildmode=c-shared -o plugins/examples/gohighlevel/gohighlevel.wasm ./plugins/examples/gohighlevel
	for f in plugins/examples/wat/*.wat; do wat2wasm "$$f" -o "$${f%.wat}.wasm" || exit 1; done
	cd plugins/examples/assemblyscript && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

run: build ## serve config.example.yaml with its Badger store in ./data
	$(BIN) serve --config $(CONFIG)

test: deps plugins ## run every test (unit, golden, fuzz seeds, end to end)
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 12m ./...
	$(GO) test -count=1 -run TestStructuredGo ./plugins # Go test binaries run structured (slow under -race)

bench: build deps plugins ## benchmarks, reported as ratios against baselines measured in the same run
	$(GO) run ./cmd/ringbench

demo: build ## start a sink and the gateway, send a test of every event, show them arriving verified
	./scripts/demo.sh

cluster-demo: build ## three nodes with embedded NATS JetStream form a cluster; calls go on after one is killed
	./scripts/cluster-demo.sh

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

clean: ## remove build output and the example store
	rm -rf bin data plugins/examples/*/*.wasm plugins/examples/assemblyscript/build
