# Makefile: the commands of the project and the installs they need (each skipped when present).
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/quake-target
CACHE        ?= $(HOME)/.cache/quake
VENV         ?= $(CACHE)/venv
MOTO_SERVER  := $(VENV)/bin/moto_server
NOIDA_VERSION := 0.2.3
NOIDA        := $(CACHE)/noida/bin/noida-db
SHARED       ?= $(abspath ../shared)

.PHONY: run test bench benchdeps deps sysdeps venv noida web edge finops browser registry promtool cloudinit lint clean

## run: the live map on embedded defaults (ARGS="..." passes flags to `quake run`)
run: sysdeps web
	cargo run --release -p quake -- run --log-format text $(ARGS)

## test: every test; starts a real Kafka broker (noida-db) for the broker tier
test: deps
	@bash scripts/test.sh

## bench: throughput and memory numbers, printed
bench: deps benchdeps
	@bash scripts/bench.sh

## benchdeps: the reference server and load generator of `make bench`
benchdeps:
	@command -v wrk >/dev/null && { command -v nginx >/dev/null || test -x /usr/sbin/nginx; } \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light; }

deps: sysdeps venv noida web edge finops browser registry promtool cloudinit

EDGE := assets/edge-auth

## edge: the Lambda@Edge login's libraries (jose) and bundler (esbuild) from npm
edge: $(EDGE)/node_modules/.done
$(EDGE)/node_modules/.done: $(EDGE)/package.json $(EDGE)/package-lock.json
	cd $(EDGE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

FINOPS := assets/finops

## finops: the FinOps dashboard's chart library and its browser test's driver from npm
finops: $(FINOPS)/node_modules/.done
$(FINOPS)/node_modules/.done: $(FINOPS)/package.json $(FINOPS)/package-lock.json
	cd $(FINOPS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

WEB    := assets/web
VENDOR := $(WEB)/vendor

## web: the map page's libraries from npm, copied to where the page loads them
web: $(VENDOR)/.done
$(VENDOR)/.done: $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)/leaflet
	cp -r $(WEB)/node_modules/leaflet/dist/leaflet.js $(WEB)/node_modules/leaflet/dist/leaflet.css \
	      $(WEB)/node_modules/leaflet/dist/images $(VENDOR)/leaflet/
	cp $(WEB)/node_modules/topojson-client/dist/topojson-client.min.js $(VENDOR)/
	cp $(WEB)/node_modules/leaflet.heat/dist/leaflet-heat.js $(VENDOR)/
	cp $(WEB)/node_modules/world-atlas/countries-110m.json $(VENDOR)/
	touch $@

## registry: what the image tests push to and read back with (CNCF distribution, skopeo, umoci)
registry:
	@command -v docker-registry >/dev/null && command -v skopeo >/dev/null && command -v umoci >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry skopeo umoci; }

## promtool: checks the logging host's Prometheus configuration (Debian package prometheus)
promtool:
	@command -v promtool >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

## cloudinit: validates the hosts' user data and units (`cloud-init schema`, `systemd-analyze
## verify`; Debian cloud-init and systemd, neither run as a service here)
cloudinit:
	@command -v cloud-init >/dev/null && command -v systemd-analyze >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cloud-init systemd; }

## browser: Debian's Chromium for the browser tests
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# C libraries the Rust crates build against (librdkafka, OpenSSL, SQLite are compiled from
# source, but need these headers and tools); installed only when missing.
sysdeps:
	@pkg-config --exists openssl zlib 2>/dev/null && command -v make >/dev/null && command -v cc >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev zlib1g-dev pkg-config make gcc; }
	@python3 -c 'import venv, ensurepip' 2>/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }

## venv: moto server (the AWS APIs of the tests) and ObsPy (the FDSN client of the tests)
venv: $(MOTO_SERVER) $(VENV)/.obspy
$(MOTO_SERVER):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet 'moto[server]>=5.1,<6'
$(VENV)/.obspy: $(MOTO_SERVER)
	$(VENV)/bin/pip install --quiet 'obspy>=1.4,<2'
	touch $@

noida: $(NOIDA)
$(NOIDA):
	cargo install noida-db --version $(NOIDA_VERSION) --locked --no-default-features --features kafka --root $(CACHE)/noida

lint:
	cargo fmt --all --check
	scripts/fmt-sees-all.sh
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf data .noida-db
