// berth-bench-lifecycle: a container's lifecycle through the public Containers API, in-process
// and warm: `ContainerRuntime.run` of /bin/true from the busybox image to its exit, its removal,
// and `Container.exec` of /bin/true into a running container.
//
// Usage: berth-bench-lifecycle ROOT [RUNS] [BUSYBOX]
//        berth-bench-lifecycle --throughput CONCURRENCY ROOT [RUNS] [BUSYBOX]
//   ROOT     a scratch runtime root (the busybox image is built there if missing)
//   RUNS     measured runs of each kind (default 50); a tenth more run first, uncounted
//   BUSYBOX  the static busybox the image is made from (default /bin/busybox, Debian's
//            busybox-static), as `berth image busybox` does
//
// --throughput: RUNS containers, each run → wait → remove, by CONCURRENCY tasks of one task
// group at once (after CONCURRENCY uncounted ones), printing
//   throughput concurrency=4 per_second=123.4 runs=64 seconds=0.52
// (the rate at which a server or a test harness gets containers through, against
// `xargs -P CONCURRENCY crun run` and `podman run` in scripts/bench's concurrency section).
//
// Prints one line per measurement for scripts/bench, in the form of berth-bench-start:
//   run      runtime.run + container.wait: start-to-exit (the `crun run` / `podman run` row)
//   remove   container.remove() of the exited container (snapshot, cgroup, files)
//   create   phase of run: runtime.create (image lookup, overlay snapshot, state, /etc files)
//   start    phase of run: container.start (spec, cgroup, clone to running)
//   exit     phase of run: container.wait after start (exec of /bin/true to the reaped exit)
//   exec     container.exec(["/bin/true"]) into one running `sleep` container
// e.g. `run median_ms=9.1 p10_ms=8.2 p90_ms=11.0 runs=50`. `run` and the phases come from two
// separate loops, so create + start + exit is close to, not exactly, run.
//
// Every container has the defaults of `docker run --network none`: an overlay snapshot of the
// image, pid, mount, uts, ipc, network and cgroup namespaces, a cgroup, Docker's capabilities
// and seccomp profile, and its output drained into its log.
import BenchSupport
import Containers

#if canImport(Glibc)
import Glibc
#endif

/// Stops the benchmark with a message (scripts/bench shows the output of a failed run).
func fail(_ message: String) -> Never {
    print("berth-bench-lifecycle: \(message)")
    exit(1)
}

/// The command line: `ROOT [RUNS] [BUSYBOX]`.
struct Options {
    var root: String
    var runs = 50
    var busybox = "/bin/busybox"
    /// Tasks at once for --throughput; nil for the latency measurements.
    var concurrency: Int?

    /// Parses the arguments after the program's name; `nil` when they are not usable.
    init?(_ arguments: [String]) {
        var arguments = arguments
        if arguments.first == "--throughput" {
            guard arguments.count >= 2, let concurrency = Int(arguments[1]), concurrency > 0 else { return nil }
            self.concurrency = concurrency
            arguments.removeFirst(2)
        }
        guard (1...3).contains(arguments.count) else { return nil }
        root = arguments[0]
        // The stores make their directories component by component from "/", so a relative
        // root would land under the host's / instead of the working directory.
        if !root.hasPrefix("/"), let cwd = getcwd(nil, 0) {
            root = String(cString: cwd) + "/" + root
            free(cwd)
        }
        if arguments.count >= 2 {
            guard let runs = Int(arguments[1]), runs > 0 else { return nil }
            self.runs = runs
        }
        if arguments.count == 3 { busybox = arguments[2] }
    }
}

@main
struct BenchLifecycle {
    static func main() async throws {
        guard let options = Options(Array(CommandLine.arguments.dropFirst())) else {
            print("usage: berth-bench-lifecycle [--throughput CONCURRENCY] ROOT [RUNS] [BUSYBOX]")
            exit(2)
        }
        let runs = options.runs
        let warmup = max(1, runs / 10)
        let runtime = try ContainerRuntime(root: options.root)
        if (try? runtime.images.image("busybox")) == nil {
            try await runtime.images.makeBusyboxImage(from: options.busybox)
        }
        var configuration = ContainerConfiguration(image: "busybox", command: ["/bin/true"])
        configuration.network = .none
        configuration.pullPolicy = .never
        let clock = ContinuousClock()
        if let concurrency = options.concurrency {
            try await throughput(runtime, configuration, concurrency: concurrency, runs: runs)
            return
        }

        var run = Samples(name: "run")
        var remove = Samples(name: "remove")
        for index in 0..<(warmup + runs) {
            let start = clock.now
            let container = try await runtime.run(configuration)
            let status = try await container.wait()
            let exited = clock.now
            try await container.remove()
            let removed = clock.now
            guard status.isSuccess else { fail("run \(index): /bin/true \(status)") }
            // The first runs warm caches (seccomp compilation, dentries, the layer) and do not count.
            if index >= warmup {
                run.add(exited - start)
                remove.add(removed - exited)
            }
        }

        var create = Samples(name: "create")
        var spawn = Samples(name: "start")
        var exit = Samples(name: "exit")
        for index in 0..<(warmup + runs) {
            let start = clock.now
            let container = try await runtime.create(configuration)
            let created = clock.now
            try await container.start()
            let started = clock.now
            let status = try await container.wait()
            let exited = clock.now
            try await container.remove()
            guard status.isSuccess else { fail("phases \(index): /bin/true \(status)") }
            if index >= warmup {
                create.add(created - start)
                spawn.add(started - created)
                exit.add(exited - started)
            }
        }

        var exec = Samples(name: "exec")
        var sleeper = configuration
        sleeper.command = ["sleep", "1000"]
        let target = try await runtime.run(sleeper)
        do {
            for index in 0..<(warmup + runs) {
                let start = clock.now
                let result = try await target.exec(["/bin/true"])
                let elapsed = clock.now - start
                guard result.status.isSuccess else { fail("exec \(index): /bin/true \(result.status)") }
                if index >= warmup { exec.add(elapsed) }
            }
        } catch {
            try? await target.remove(force: true)
            throw error
        }
        try await target.remove(force: true)

        for samples in [run, remove, create, spawn, exit, exec] { samples.report() }
    }

    /// Runs `runs` containers with `concurrency` of them in flight at once and prints the rate.
    static func throughput(
        _ runtime: ContainerRuntime, _ configuration: ContainerConfiguration, concurrency: Int, runs: Int
    ) async throws {
        /// One container from run to removal.
        @Sendable func once(_ index: Int) async throws {
            let container = try await runtime.run(configuration)
            let status = try await container.wait()
            try await container.remove()
            guard status.isSuccess else { fail("throughput \(index): /bin/true \(status)") }
        }
        /// `count` containers, `concurrency` at a time: each task takes the next index when its
        /// container is gone.
        func batch(_ count: Int) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = 0
                while next < min(concurrency, count) {
                    let index = next
                    group.addTask { try await once(index) }
                    next += 1
                }
                while try await group.next() != nil, next < count {
                    let index = next
                    group.addTask { try await once(index) }
                    next += 1
                }
                try await group.waitForAll()
            }
        }
        try await batch(concurrency)
        let clock = ContinuousClock()
        let start = clock.now
        try await batch(runs)
        let parts = (clock.now - start).components
        let seconds = Double(parts.seconds) + Double(parts.attoseconds) / 1e18
        print("throughput concurrency=\(concurrency) per_second=\(Double(runs) / seconds) runs=\(runs) seconds=\(seconds)")
    }
}
