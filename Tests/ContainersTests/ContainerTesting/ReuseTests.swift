import AsyncHTTPClient
import Containers
import ContainerTesting
import Foundation
import Glibc
import Testing
import TestSupport

/// Fixtures reused across test runs: shared by processes started together, new for a new
/// configuration, removed by the sweep once their lease ends.
@Suite(.serialized)
struct ReuseTests {
    static let childRootVariable = "BERTH_TEST_REUSE_ROOT"
    static let childTestVariable = "BERTH_TEST_REUSE_TEST"
    static let childOutputVariable = "BERTH_TEST_REUSE_OUTPUT"

    /// A reused sleeper, its key set apart by `test`.
    static func reusedSleeper(_ test: String, timeToLive: Duration = .seconds(600)) -> Fixture {
        sleeper(test).reused(for: timeToLive)
    }

    /// Removes the reused containers of `test`, which outlive their fixtures by design.
    func removeReused(_ test: String, in runtime: ContainerRuntime) async throws {
        for container in containers(of: test, in: runtime) { try await container.remove(force: true) }
    }

    @Test func twoProcessesStartedTogetherShareOneFixture() async throws {
        let runtime = try await TestRuntime.shared()
        let test = "reuse-shared-\(getpid())"
        let scratch = try TemporaryDirectory(prefix: "reuse")
        defer { try? scratch.remove() }
        // The children are this test bundle running only `reusedFixtureOfAChild`.
        let children = try (0..<2).map { index in
            let child = Process()
            child.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            child.arguments = ["--testing-library", "swift-testing", "--filter", "reusedFixtureOfAChild"]
            child.environment = ProcessInfo.processInfo.environment.merging([
                Self.childRootVariable: runtime.root, Self.childTestVariable: test,
                Self.childOutputVariable: scratch.path + "/\(index)",
            ]) { $1 }
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try child.run()
            return child
        }
        // After the launches, whose own fds (Foundation's) stay open in this process; long
        // before the children, whole test bundles starting, make anything.
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        for child in children { child.waitUntilExit() }
        let ids = try (0..<2).map { try String(contentsOfFile: scratch.path + "/\($0)", encoding: .utf8) }
        #expect(ids[0] == ids[1] && ids[0].count == 64, "\(ids)")
        #expect(children.allSatisfy { $0.terminationStatus == 0 })
        let reused = containers(of: test, in: runtime)
        #expect(reused.map(\.id) == [ids[0]], "one container, running after both processes ended")
        #expect(reused.first?.state.status == .running)
        try await removeReused(test, in: runtime)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// The second process of the sharing test: starts the reused fixture and writes its id.
    @Test(.enabled(if: ProcessInfo.processInfo.environment[childRootVariable] != nil))
    func reusedFixtureOfAChild() async throws {
        let environment = ProcessInfo.processInfo.environment
        let runtime = try ContainerRuntime(root: try #require(environment[Self.childRootVariable]))
        let id = try await withFixture(Self.reusedSleeper(try #require(environment[Self.childTestVariable])), in: runtime) {
            $0.container.id
        }
        try id.write(toFile: try #require(environment[Self.childOutputVariable]), atomically: true, encoding: .utf8)
    }

    @Test func theSameConfigurationIsReusedAndAChangedOneMakesANewFixture() async throws {
        let runtime = try await TestRuntime.shared()
        let test = "reuse-config-\(getpid())"
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let fixture = Self.reusedSleeper(test)
        let first = try await withFixture(fixture, in: runtime) { $0.container.id }
        let again = try await withFixture(fixture, in: runtime) { $0.container.id }
        #expect(first == again)
        var changed = fixture
        changed.configuration.environment = ["CHANGED=1"]
        #expect(try fixture.reuseKey(in: runtime) != changed.reuseKey(in: runtime))
        let other = try await withFixture(changed, in: runtime) { $0.container.id }
        #expect(other != first)
        #expect(Set(containers(of: test, in: runtime).map(\.id)) == [first, other])
        try await removeReused(test, in: runtime)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test func aReusedFixturePublishesItsPortsForEachUseAndClosesThemAfter() async throws {
        let runtime = try await TestRuntime.shared()
        let test = "reuse-ports-\(getpid())"
        try await withTestNetwork(runtime) { network in
            let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
            var web = webFixture(on: network)
            web.configuration.labels["fixture-test"] = test
            web = web.reused()
            var uses: [(id: String, port: UInt16)] = []
            for _ in 0..<2 {
                uses.append(try await withFixture(web, in: runtime) { web in
                    let port = try web.mappedPort(8080)
                    // At once after the start: the proxy listens before withFixture returns.
                    let response = try await HTTPClient.shared.get(url: "http://\(web.host):\(port)/index.html").get()
                    #expect(response.status.code == 200)
                    #expect(response.body.map { String(buffer: $0) } == "hello from a fixture\n")
                    #expect(throws: FixtureError.self) { try web.mappedPort(9999) }
                    return (web.container.id, port)
                })
                // The use's proxy is gone with it; the container runs on.
                let closed = try runProgram(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:\(uses.last!.port)/index.html"])
                #expect(closed.status == 7, "curl: connection refused, \(closed)")
            }
            #expect(uses[0].id == uses[1].id)
            #expect(containers(of: test, in: runtime).map(\.state.status) == [.running])
            try await removeReused(test, in: runtime)
            let leaks = await LeakSnapshot.expectClean(since: before)
            #expect(leaks.isEmpty, "\(leaks)")
        }
    }

    @Test func anExpiredFixtureIsRemovedByTheSweep() async throws {
        let runtime = try await TestRuntime.shared()
        let test = "reuse-expired-\(getpid())"
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let id = try await withFixture(Self.reusedSleeper(test, timeToLive: .seconds(1)), in: runtime) { $0.container.id }
        #expect(try runtime.container(id).state.expires != nil)
        var removed: [String] = []
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while !containers(of: test, in: runtime).isEmpty && ContinuousClock.now < deadline {
            removed += await runtime.pruneSessions()
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(removed.contains("expired container \(id)"), "\(removed)")
        #expect(containers(of: test, in: runtime).isEmpty)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }
}
