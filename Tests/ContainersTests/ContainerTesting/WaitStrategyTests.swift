import AsyncHTTPClient
import Containers
import ContainerTesting
import Testing
import TestSupport

/// The wait-strategy table: each strategy is met by a container that becomes ready after a
/// delay (and not before), and fails with a diagnostic — the state and the last log lines —
/// on one that never does.
@Suite(.serialized)
struct WaitStrategyTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var strategy: WaitStrategy
        /// Ready some 300 ms after it starts.
        var ready: String
        /// Never ready (or, for the exit strategy, ready never again).
        var never: String
        var ports: [UInt16] = []
        /// What the error names as not met, when not the whole strategy.
        var failing: String?
        var testDescription: String { name }
    }

    /// Every command prints `starting` first: the diagnostic must show it.
    static let rows: [Row] = [
        Row(name: "log line", strategy: .logLine(matching: "^ready$"),
            ready: "echo starting; sleep 0.3; echo ready; exec sleep 60",
            never: "echo starting; echo not ready; exec sleep 60"),
        Row(name: "log line 3 times", strategy: .logLine(matching: "tick", times: 3),
            ready: "echo starting; for i in 1 2 3; do sleep 0.1; echo tick $i; done; exec sleep 60",
            never: "echo starting; echo tick 1; echo tick 2; exec sleep 60"),
        Row(name: "listening port", strategy: .listeningPort(8080),
            ready: "echo starting; sleep 0.3; exec nc -l -p 8080",
            never: "echo starting; exec nc -l -p 8081"),
        Row(name: "http", strategy: .http("/index.html", port: 8080, body: { $0 == "ok\n" }),
            ready: "echo starting; mkdir -p /www; echo ok > /www/index.html; sleep 0.3; exec httpd -f -p 8080 -h /www",
            never: "echo starting; mkdir -p /www; echo wrong > /www/index.html; exec httpd -f -p 8080 -h /www",
            ports: [8080]),
        Row(name: "exec", strategy: .exec(["test", "-e", "/tmp/ready"]),
            ready: "echo starting; sleep 0.3; touch /tmp/ready; exec sleep 60",
            never: "echo starting; exec sleep 60"),
        Row(name: "file exists", strategy: .fileExists("/tmp/ready"),
            ready: "echo starting; sleep 0.3; touch /tmp/ready; exec sleep 60",
            never: "echo starting; exec sleep 60"),
        Row(name: "exit", strategy: .exit(code: 0),
            ready: "echo starting; sleep 0.3; exit 0",
            never: "echo starting; exit 3"),
        Row(name: "all of", strategy: .allOf([.logLine(matching: "half"), .fileExists("/tmp/ready")]),
            ready: "echo starting; echo half; sleep 0.3; touch /tmp/ready; exec sleep 60",
            never: "echo starting; echo half; exec sleep 60", failing: "/tmp/ready to exist"),
        Row(name: "any of", strategy: .anyOf([.fileExists("/nope"), .logLine(matching: "^ready$")]),
            ready: "echo starting; sleep 0.3; echo ready; exec sleep 60",
            never: "echo starting; exec sleep 60"),
    ]

    func fixture(_ row: Row, _ script: String, timeout: Duration, network: String) -> Fixture {
        Fixture(image: "busybox", command: ["/bin/sh", "-c", script], ports: row.ports,
                network: row.ports.isEmpty ? nil : .bridge([network]), waitingFor: row.strategy, startupTimeout: timeout)
    }

    @Test(arguments: rows)
    func isMetAfterTheDelayAndNotBefore(_ row: Row) async throws {
        let runtime = try await TestRuntime.shared()
        let clock = ContinuousClock()
        try await withTestNetwork(runtime) { network in
            let started = clock.now
            try await withFixture(fixture(row, row.ready, timeout: .seconds(30), network: network), in: runtime) { _ in
                #expect(clock.now - started >= .milliseconds(300), "\(row.name) was met before the container was ready")
            }
        }
    }

    @Test(arguments: rows)
    func failsWithTheStateAndTheLastLogLines(_ row: Row) async throws {
        let runtime = try await TestRuntime.shared()
        let error = try await withTestNetwork(runtime) { network in
            try await #require(throws: FixtureError.self) {
                try await withFixture(fixture(row, row.never, timeout: .milliseconds(1500), network: network), in: runtime) { _ in }
            }
        }
        #expect(error.code == (row.name == "exit" ? .neverReady : .timedOut), "\(error)")
        #expect(error.state != nil && error.lastLogLines.contains("starting"), "\(error)")
        #expect("\(error)".contains("starting") && "\(error)".contains(row.failing ?? row.strategy.description), "\(error)")
    }

    /// The file wait resolves the path inside the container's root: a symlink to a directory
    /// that exists on the host (the test cache) but not in the container leads nowhere.
    @Test func theFileWaitResolvesInsideTheContainersRoot() async throws {
        let runtime = try await TestRuntime.shared()
        let script = "ln -s \(TestRootfs.cacheDirectory) /tmp/out; echo starting; exec sleep 60"
        let fixture = Fixture(image: "busybox", command: ["/bin/sh", "-c", script],
                              waitingFor: .fileExists("/tmp/out/tmp"), startupTimeout: .milliseconds(800))
        let error = try await #require(throws: FixtureError.self) { try await withFixture(fixture, in: runtime) { _ in } }
        #expect(error.code == .timedOut, "\(error)")
    }

    /// A published port's forwarder listens on the host from the start; the port wait looks
    /// inside the container and is met only once the service itself listens.
    @Test func thePortWaitIsNotMetBeforeTheServiceListens() async throws {
        let runtime = try await TestRuntime.shared()
        let clock = ContinuousClock()
        try await withTestNetwork(runtime) { network in
            let started = clock.now
            let web = Fixture(image: "busybox", command: ["/bin/sh", "-c", "mkdir -p /www; echo hi > /www/index.html; sleep 1; echo listening; exec httpd -f -p 8080 -h /www"],
                              ports: [8080], network: .bridge([network]), waitingFor: .listeningPort(8080))
            try await withFixture(web, in: runtime) { web in
                #expect(clock.now - started >= .seconds(1))
                let log = await collect(web.container.logs()).map(\.log).joined()
                #expect(log.contains("listening"))
                let response = try await HTTPClient.shared.get(url: "http://\(web.host):\(try web.mappedPort(8080))/index.html").get()
                #expect(response.status.code == 200)
            }
        }
    }
}
