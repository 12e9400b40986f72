// berth-bench-fixture: from the `withFixture` call to ready, in-process and warm, for a busybox
// httpd and for PostgreSQL (issue 14's benchmark; scripts/bench's "fixtures" section runs it).
//
// Usage: berth-bench-fixture ROOT [RUNS] [--save DIRECTORY]
//   ROOT     a scratch runtime root: the busybox image (from /bin/busybox) and the PostgreSQL
//            image (from the host's postgresql package) are built there if missing
//   RUNS     measured runs of each kind (default 20); two more run first, uncounted
//   --save   also writes both images as one docker-archive, DIRECTORY/images.tar, for `podman
//            load`, and the PostgreSQL fixture's command line, NUL-separated, to
//            DIRECTORY/postgres-command, so that the peers run the same files and the same script
//
// Prints, in the form of berth-bench-lifecycle:
//   httpd      withFixture(busybox httpd -p 8080, waiting for .listeningPort(8080)) to its body
//   postgres   withFixture(PostgresFixture(), initdb + database + server, waiting for its
//              "ready to accept connections" line and port 5432) to its body
// e.g. `httpd median_ms=12.3 p10_ms=11.0 p90_ms=14.2 runs=20`. The removal after the body is
// not counted. No network (the port checks read the container's own network namespace), so
// the numbers hold the fixture's work, not a bridge's.
import BenchSupport
import Containers
import ContainerTesting
import Images

#if canImport(Glibc)
import Glibc
#endif

var arguments = Array(CommandLine.arguments.dropFirst())
var saveDirectory: String?
if let index = arguments.firstIndex(of: "--save"), index + 1 < arguments.count {
    saveDirectory = arguments[index + 1]
    arguments.removeSubrange(index...(index + 1))
}
guard (1...2).contains(arguments.count), arguments[0].hasPrefix("/"), let runs = Int(arguments.count == 2 ? arguments[1] : "20") else {
    print("usage: berth-bench-fixture /ROOT [RUNS] [--save DIRECTORY]")
    exit(2)
}

let runtime = try ContainerRuntime(root: arguments[0])
if (try? runtime.images.image("busybox")) == nil { try await runtime.images.makeBusyboxImage() }
let httpd = Fixture(image: "busybox", command: ["httpd", "-f", "-p", "8080", "-h", "/tmp"], waitingFor: .listeningPort(8080))
var postgres = try await PostgresFixture().fixture(in: runtime)
postgres.configuration.network = .none
postgres.configuration.ports = []
if let saveDirectory {
    try await runtime.images.save(["busybox", postgres.configuration.image], to: saveDirectory + "/images.tar")
    let command = (postgres.configuration.command ?? []).map { Array($0.utf8) + [0] }.joined()
    let fd = open(saveDirectory + "/postgres-command", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0, Array(command).withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == command.count else {
        print("berth-bench-fixture: cannot write \(saveDirectory)/postgres-command")
        exit(1)
    }
    close(fd)
}

for (name, fixture) in [("httpd", httpd), ("postgres", postgres)] {
    var samples = Samples(name: name)
    let clock = ContinuousClock()
    for run in 0..<(runs + 2) {
        let start = clock.now
        let ready = try await withFixture(fixture, in: runtime) { _ in clock.now }
        if run >= 2 { samples.add(ready - start) }
    }
    samples.report()
}
