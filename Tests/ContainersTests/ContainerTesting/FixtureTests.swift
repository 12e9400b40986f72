import AsyncHTTPClient
import Containers
import ContainerTesting
import Glibc
import Testing
import TestSupport
import XCTest

/// A busybox httpd serving a file copied in, published on a free host port of `network`.
func webFixture(on network: String) -> Fixture {
    Fixture(image: "busybox", command: ["httpd", "-f", "-p", "8080", "-h", "/www"],
            files: [.text("hello from a fixture\n", at: "/www/index.html")],
            ports: [8080], network: .bridge([network]), waitingFor: .http("/index.html", port: 8080))
}

/// Runs `body` with a bridge network of this test process, removed after it: the default
/// network's bridge may belong to another Berth root on the machine.
func withTestNetwork<T>(_ runtime: ContainerRuntime, _ body: (String) async throws -> T) async throws -> T {
    let name = "fixture-\(getpid())"
    _ = try runtime.networks.create(name)
    defer { try? runtime.networks.remove(name) }
    return try await body(name)
}

/// A fixture with no network beyond `lo`, which leaves nothing on the host but its container:
/// what the leak checks start. Labelled `fixture-test=<test>`, so that a test finds its own.
func sleeper(_ test: String, _ waitStrategy: WaitStrategy = .running) -> Fixture {
    var fixture = Fixture(image: "busybox", command: ["/bin/sh", "-c", "echo starting; exec sleep 60"],
                          waitingFor: waitStrategy, startupTimeout: .seconds(30))
    fixture.configuration.labels["fixture-test"] = test
    return fixture
}

/// The containers of the test labelled `test`, running or not.
func containers(of test: String, in runtime: ContainerRuntime) -> [Container] {
    runtime.list(all: true, labels: ["fixture-test": test])
}

@Suite(.serialized)
struct FixtureTests {
    @Test func anHTTPFixtureIsReachedWithARealClientAtItsMappedPortAndItsAddress() async throws {
        let runtime = try await TestRuntime.shared()
        try await withTestNetwork(runtime) { network in
            try await withFixture(webFixture(on: network), in: runtime) { web in
                for url in ["http://\(web.host):\(try web.mappedPort(8080))/index.html",
                            "http://\(try #require(web.address)):8080/index.html"] {
                    let response = try await HTTPClient.shared.get(url: url).get()
                    #expect(response.status.code == 200)
                    #expect(response.body.map { String(buffer: $0) } == "hello from a fixture\n")
                }
                #expect(throws: FixtureError.self) { try web.mappedPort(9999) }
            }
        }
    }

    @Test func filesAreCopiedInAsBytesTextAndHostPathsBeforeTheStart() async throws {
        let runtime = try await TestRuntime.shared()
        let host = try TemporaryDirectory(prefix: "fixture-files")
        defer { try? host.remove() }
        let hostFile = host.path + "/greeting"
        try Array("from the host\n".utf8).withUnsafeBytes { bytes in
            let fd = open(hostFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            defer { close(fd) }
            guard write(fd, bytes.baseAddress, bytes.count) == bytes.count else { throw TestSupportError("write \(hostFile)") }
        }
        let fixture = Fixture(image: "busybox", command: ["/tmp/run.sh"], files: [
            .text("#!/bin/sh\ncat /tmp/a /tmp/b\nexec sleep 60\n", at: "/tmp/run.sh", mode: 0o755),
            .bytes([0x62, 0x79, 0x74, 0x65, 0x73, 0x0A], at: "/tmp/a"),
            .hostPath(hostFile, at: "/tmp/b"),
        ], waitingFor: .logLine(matching: "from the host"))
        try await withFixture(fixture, in: runtime) { fixture in
            let log = await collect(fixture.container.logs()).map(\.log).joined()
            #expect(log == "bytes\nfrom the host\n")
        }
    }

    @Test func severalFixturesStartInParallelAndAFailureRemovesThemAll() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let test = "parallel"
        let names = try await withFixtures([sleeper(test), sleeper(test), sleeper(test)], in: runtime) { fixtures in
            #expect(containers(of: test, in: runtime).count == 3)
            return fixtures.map(\.container.name)
        }
        #expect(Set(names).count == 3)
        let failing = sleeper(test, .logLine(matching: "never").timeout(.milliseconds(500)))
        await #expect(throws: FixtureError.self) {
            try await withFixtures([sleeper(test), failing, sleeper(test)], in: runtime) { _ in }
        }
        #expect(containers(of: test, in: runtime).isEmpty)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    struct BodyFailed: Error {}

    @Test func withFixtureRemovesTheContainerWhenTheBodyThrows() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        await #expect(throws: BodyFailed.self) {
            try await withFixture(sleeper("body-throws"), in: runtime) { _ in throw BodyFailed() }
        }
        #expect(containers(of: "body-throws", in: runtime).isEmpty)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// Cancelled while the body runs, and while the wait for ready runs.
    @Test(arguments: [false, true])
    func withFixtureRemovesTheContainerWhenTheTaskIsCancelled(duringStartup: Bool) async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let test = "cancelled-\(duringStartup)"
        let fixture = sleeper(test, duringStartup ? .logLine(matching: "never") : .running)
        let task = Task {
            try await withFixture(fixture, in: runtime) { _ in try await Task.sleep(for: .seconds(60)) }
        }
        // Cancel once the container runs: then the task is in the wait or in the body.
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(30))
        while runtime.list(labels: ["fixture-test": test]).isEmpty && clock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(containers(of: test, in: runtime).isEmpty)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }
}

/// The trait on a suite: one container for every test in it.
@Suite(.serialized, .fixture("shared", sleeper("trait-suite"), runtime: { try await TestRuntime.shared() }))
struct FixtureTraitTests {
    @Test func theSuitesFixtureRuns() async throws {
        let shared = try RunningFixture.scoped("shared")
        #expect(try await shared.container.exec(["echo", "in the suite's fixture"]).standardOutput == "in the suite's fixture\n")
    }

    @Test(.fixture("own", sleeper("trait-test"), runtime: { try await TestRuntime.shared() }))
    func aTestsFixtureJoinsTheSuites() async throws {
        let own = try RunningFixture.scoped("own")
        let shared = try RunningFixture.scoped("shared")
        #expect(own.container.state.status == .running && shared.container.state.status == .running)
        #expect(own.container.id != shared.container.id)
        #expect(throws: FixtureError.self) { try RunningFixture.scoped("nope") }
    }

    /// The test's own fixture is gone after it; the suite's stays for the suite.
    @Test func aTestsFixtureIsRemovedAfterTheTest() async throws {
        #expect(containers(of: "trait-test", in: try await TestRuntime.shared()).isEmpty)
        #expect(containers(of: "trait-suite", in: try await TestRuntime.shared()).count == 1)
    }
}

/// The XCTest helper: started in the test, removed in its tear-down.
final class FixtureXCTests: XCTestCase {
    private var started: Container?
    private let network = "fixture-\(getpid())"

    override func setUp() async throws {
        _ = try await TestRuntime.shared().networks.create(network)
    }

    func testAnHTTPFixtureIsRemovedInTearDown() async throws {
        let web = try await startFixture(webFixture(on: network), in: try await TestRuntime.shared())
        started = web.container
        let response = try await HTTPClient.shared.get(url: "http://\(web.host):\(try web.mappedPort(8080))/index.html").get()
        XCTAssertEqual(response.status.code, 200)
    }

    /// Runs after the tear-down blocks.
    override func tearDown() async throws {
        let runtime = try await TestRuntime.shared()
        if let started { XCTAssertThrowsError(try runtime.container(started.id)) }
        try runtime.networks.remove(network)
    }
}
