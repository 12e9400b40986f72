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
//   httpd             withFixture(busybox httpd -p 8080, waiting for .listeningPort(8080)) to
//                     its body
//   postgres          withFixture(PostgresFixture(), initdb + database + server, waiting for
//                     its "ready to accept connections" line and port 5432) to its body
//   httpd-reuse       the same with .reused(), the container already running (made by an
//   postgres-reuse    uncounted first use): the lookup, the lease renewal and the wait
//   postgres-restore  RunningFixture.restore(snapshot) of a PostgreSQL fixture to ready again
//                     (kill, swap the saved data directory back, restart, WAL recovery, wait),
//                     after 10,000 rows were written since the snapshot
//   postgres-fresh    what restore saves: removing the fixture and starting a new one
//                     (initdb again) to ready
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

let clock = ContinuousClock()
for (name, fixture) in [("httpd", httpd), ("postgres", postgres), ("httpd-reuse", httpd.reused()), ("postgres-reuse", postgres.reused())] {
    var samples = Samples(name: name)
    var reused: Container?
    for run in 0..<(runs + 2) {
        let start = clock.now
        let ready = try await withFixture(fixture, in: runtime) { running in
            reused = running.fixture.reuseTimeToLive == nil ? nil : running.container
            return clock.now
        }
        if run >= 2 { samples.add(ready - start) }
    }
    try await reused?.remove(force: true)
    samples.report()
}

// Restore against a fresh start (issue 14's snapshot row), on a bridge network of the
// benchmark's root so that the host's psql writes the rows: a table, a snapshot of it, then
// each run inserts 10,000 rows and restores the snapshot (the rows are gone: checked).
if (try? runtime.networks.inspect("bench-fixture")) == nil { _ = try runtime.networks.create("bench-fixture") }
var database = try await PostgresFixture(network: .bridge(["bench-fixture"])).fixture(in: runtime)
database.configuration.ports = []
/// Runs `sql` with the host's psql against `running`; exits on failure.
func psql(_ running: RunningFixture, _ sql: String) {
    guard let address = running.address,
          system("psql 'postgres://test:test@\(address):5432/test' -qtAX -v ON_ERROR_STOP=1 -c \"\(sql)\" >/dev/null") == 0 else {
        print("berth-bench-fixture: psql failed: \(sql)")
        exit(1)
    }
}
var restoreSamples = Samples(name: "postgres-restore")
var freshSamples = Samples(name: "postgres-fresh")
var running = try await database.start(in: runtime)
psql(running, "create table t (n int primary key, label text)")
let empty = try await running.snapshot()
for run in 0..<(runs + 2) {
    psql(running, "insert into t select n, 'row ' || n from generate_series(1, 10000) n")
    let start = clock.now
    try await running.restore(empty)
    if run >= 2 { restoreSamples.add(clock.now - start) }
    psql(running, "select 1 / (case when count(*) = 0 then 1 else 0 end) from t")  // division by zero: rows left
}
for run in 0..<(runs + 2) {
    let start = clock.now
    try await running.remove()
    running = try await database.start(in: runtime)
    if run >= 2 { freshSamples.add(clock.now - start) }
}
try await running.remove()
restoreSamples.report()
freshSamples.report()
