# Berth's entry points. Run as root on Debian 12 (see README.md).
#
#   make demo    install deps, build the berth CLI, make the busybox image, run a container from it
#   make test    install deps, build and run every test (serially), then build the docs and
#                the example packages and run their tests (make examples)
#   make docs    DocC documentation of the library targets
#   make test-vm the tests that need another kernel, on Debian 12's own (6.1) with pure cgroup v2,
#                in a QEMU guest (scripts/vm-test; software emulation, some minutes)
#   make bench   start latency against unshare, crun and runc; the container lifecycle (run, exec,
#                memory of a detached container) against crun, podman and docker (scripts/bench);
#                SECTIONS=snapshots: overlay against copy from a 4-layer image, in the 6.1 guest;
#                SECTIONS=fixtures: withFixture to ready (httpd, PostgreSQL) against podman run
#   make bench-server  Examples/code-runner: 2,000 runs at 8 clients, and echo-hi runs per second
#                and p50/p99 at 1, 4, 8 clients against `podman run --rm` (release build)
#
# BUILD=.build-mine keeps a second build folder apart (add it to .gitignore: .build-*/ is).

SWIFT        ?= swift
BUILD        ?= .build
DOCS_TARGETS ?= ContainerKernel Layers Images Networking Containers ContainerTesting
SWIFTPM      := $(SWIFT) build --scratch-path $(BUILD)
BERTH        := $(BUILD)/release/berth
# Executables link the Swift standard library and Foundation statically: a dynamic build loads
# some 30 shared libraries at every start, most of `berth --help`'s time (Performance.md).
# The static standard library's link arguments also pass -export-dynamic, which turns every
# Swift symbol of the program into a dynamic one (33 000 in berth) that nothing looks up but
# that every start pays for (the loader's symbol table, the runtime's dladdr over it at start);
# --no-export-dynamic comes later on the link line and wins.
# Flags of the build, not of Package.swift: a package that depends on Berth links as it likes.
STATIC_STDLIB ?= --static-swift-stdlib -Xlinker --no-export-dynamic

.PHONY: deps berth demo test docs bench bench-server supervisor lint-c check-consumer test-vm examples

deps:
	scripts/install-deps

berth: deps
	$(SWIFTPM) -c release $(STATIC_STDLIB) --product berth

# berth-supervisor holds detached containers (run -d) and is the --init. It is embedded in the
# library as bytes (Sources/CChildPath/ck_supervisor_image.c): after changing
# Sources/berth-supervisor/main.c, run this and commit the result. `make test` checks it.
supervisor: deps
	scripts/build-supervisor

# The C sources of every C target with strict warnings, as errors: here, not in Package.swift,
# so that a newer compiler's new warning never breaks a package that depends on Berth.
C_TARGETS := CChildPath CSyscalls CNetlink CArchive

lint-c: deps
	for t in $(C_TARGETS); do \
		for f in Sources/$$t/*.c; do \
			cc -std=gnu11 -Wall -Wextra -Werror -O2 -fsyntax-only -ISources/$$t/include $$f || exit 1; \
		done; \
	done
	scripts/build-supervisor --check

# The embedded default image: busybox:latest built by Berth from Debian's busybox-static,
# offline, into the default root (/var/lib/berth, or BERTH_ROOT).
demo: berth
	$(BERTH) image busybox
	$(BERTH) run --rm --hostname berth-demo busybox \
		/bin/sh -c 'echo "Hello from a Berth container: pid $$$$ on $$(hostname)"'

# Examples/hello-berth (the README's and the Containers articles' code, which
# scripts/check-doc-code finds there block by block) built against a tagged clone of HEAD with
# `from: "0.1.0"`, as a user's package depends on Berth: catches what SwiftPM refuses in a
# versioned dependency (unsafe flags) and imports the documentation's code needs.
check-consumer: deps
	scripts/check-doc-code
	scripts/check-consumer

# Examples/fixtures-example's tests (PostgreSQL and busybox fixtures, psql and URLSession),
# built in the main build's scratch path so that Berth's targets are not compiled again.
# The example packages that depend on Berth by path (Examples/code-runner, the example server;
# Examples/fixtures-example), built in the main build's scratch path after the main build, and
# their tests (real servers on 127.0.0.1, real containers).
examples: deps
	SWIFT=$(SWIFT) BUILD=$(BUILD) scripts/test-examples

# Serial: every test checks that nothing leaked into the test process (mounts, fds, children,
# cgroups), which only holds when no other test is running beside it.
# The documentation is part of the product: CI builds every catalog with warnings as errors.
# --explicit-target-dependency-import-check: a target that imports a module it does not declare
# fails the build (Package.swift is the graph the code really has).
test: deps lint-c
	$(SWIFTPM) --build-tests --explicit-target-dependency-import-check error
	$(SWIFT) test --scratch-path $(BUILD) --skip-build --no-parallel
	$(MAKE) examples
	$(MAKE) docs
	$(MAKE) check-consumer

docs:
	for t in $(DOCS_TARGETS); do \
		$(SWIFT) package --scratch-path $(BUILD) generate-documentation --target $$t --warnings-as-errors || exit 1; \
	done

# One product per swift build: with several --product flags SwiftPM builds only the last.
BENCH_PRODUCTS := berth-bench-start berth-bench-lifecycle berth-bench-snapshot

# berth-bench-fixture links ContainerTesting, which imports Swift Testing and XCTest: the
# toolchain has no static libraries of those, so it links the standard library dynamically.
bench: berth
	for p in $(BENCH_PRODUCTS); do $(SWIFTPM) -c release $(STATIC_STDLIB) --product $$p || exit 1; done
	$(SWIFTPM) -c release --product berth-bench-fixture
	BERTH=$(BERTH) LIBRARY_BENCH=$(BUILD)/release/berth-bench-start \
		LIFECYCLE_BENCH=$(BUILD)/release/berth-bench-lifecycle \
		SNAPSHOT_BENCH=$(BUILD)/release/berth-bench-snapshot \
		FIXTURE_BENCH=$(BUILD)/release/berth-bench-fixture scripts/bench

# Examples/code-runner under load and against `podman run --rm` (scripts/bench, section server).
bench-server: berth
	for p in code-runner code-runner-load; do \
		$(SWIFT) build --package-path Examples/code-runner --scratch-path $(BUILD) -c release --product $$p || exit 1; \
	done
	SECTIONS=server BERTH=$(BERTH) SERVER_BIN=$(BUILD)/release/code-runner LOAD_BIN=$(BUILD)/release/code-runner-load scripts/bench

# Debian 12's kernel, pure cgroup v2, in QEMU: the berth CLI from an image (scripts/vm-smoke),
# then the test bundle built here, run in the guest; then the cgroup suites again on the same
# kernel with systemd's older hybrid layout (v1 controllers beside an empty cgroup2), and with
# the test process in a nested cgroup (system.slice/ci.service). The whole acceptance of the
# kernel-facing targets runs there with VM_FILTER='ContainerKernelTests|LayersTests|ContainersTests|NetworkingTests'
# (some 16 minutes; not in CI).
# VM_FILTER picks the suites that depend on the kernel or the cgroup layout; under emulation
# process creation is some 40x slower, so the subset stays small. The bundle runs as
# `swift test --skip-build` would run it: SwiftPM itself spends four minutes of emulation
# loading the manifest before the first test.
VM_FILTER  ?= SnapshotDriverTests|LayerStackTests|CgroupTests|ContainerKernelTests\.(LifecycleTests|IsolationTests|ResourceTests|SpecOptionTests|SeccompTests|ChildPathEscapeTests)|ContainersTests\.(DetachedTests|OwnerDeathTests|ImageSourceTests|CopyTests|ContainerStateMachineTests|SandboxTests|DeadlineOutputTests|FixtureTests|FixtureTraitTests|WaitStrategyTests|SnapshotTests|SessionTests|ReuseTests)
VM_HYBRID_FILTER ?= CgroupTests|ContainerKernelTests\.(ResourceTests|LifecycleTests)|ContainersTests\.DetachedTests
# The test process in a non-root cgroup, as under systemd (a service) or inside a container.
VM_NESTED_FILTER ?= CgroupTests|ContainersTests\.DetachedTests
VM_TIMEOUT ?= 1200

test-vm: deps
	scripts/install-vm-deps
	$(SWIFTPM) --build-tests
	scripts/vm-test --timeout 600 -- scripts/vm-smoke $(BUILD)/debug/berth
	scripts/vm-test --timeout $(VM_TIMEOUT) -- \
		$(BUILD)/debug/BerthPackageTests.xctest --testing-library swift-testing --no-parallel --filter '$(VM_FILTER)'
	scripts/vm-test --cgroups hybrid --timeout $(VM_TIMEOUT) -- \
		$(BUILD)/debug/BerthPackageTests.xctest --testing-library swift-testing --no-parallel --filter '$(VM_HYBRID_FILTER)'
	scripts/vm-test --cgroup system.slice/ci.service --timeout $(VM_TIMEOUT) -- \
		$(BUILD)/debug/BerthPackageTests.xctest --testing-library swift-testing --no-parallel --filter '$(VM_NESTED_FILTER)'
