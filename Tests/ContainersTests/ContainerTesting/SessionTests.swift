import Containers
import ContainerTesting
import Foundation
import Glibc
import Testing
import TestSupport

/// A test session killed with SIGKILL: its fixtures die with it, and the next session (or
/// `berth system prune --sessions`) removes everything else it made.
@Suite(.serialized)
struct SessionTests {
    static let childRootVariable = "BERTH_TEST_SESSION_ROOT"
    static let childNetworkVariable = "BERTH_TEST_SESSION_NETWORK"
    static let label = "killed-session"

    /// What a session leaves on the host besides its processes: mounts, cgroups, interfaces,
    /// and the state below the root (container records, sandboxes, network namespaces, session
    /// directories).
    static func stateDirectories(of root: String) -> [String] {
        [root + "/containers", root + "/netns", root + "/networks/sandboxes", root + "/sessions"]
    }

    @Test func aSigkilledSessionsFixturesDieWithinTwoSecondsAndTheNextSessionLeavesNothing() async throws {
        let runtime = try await TestRuntime.shared()
        try await withTestNetwork(runtime) { network in
            let endpointsBefore = try runtime.networks.inspect(network).endpoints
            // The child is this test bundle running only `fixturesOfAKilledSession`.
            let child = Process()
            child.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            child.arguments = ["--testing-library", "swift-testing", "--filter", "fixturesOfAKilledSession"]
            child.environment = ProcessInfo.processInfo.environment.merging(
                [Self.childRootVariable: runtime.root, Self.childNetworkVariable: network]) { $1 }
            // Its output, for the message when it fails to start its fixtures.
            let output = try TemporaryDirectory(prefix: "session-child")
            defer { try? output.remove() }
            FileManager.default.createFile(atPath: output.path + "/output", contents: nil)
            let outputFile = try FileHandle(forWritingTo: URL(fileURLWithPath: output.path + "/output"))
            child.standardOutput = outputFile
            child.standardError = outputFile
            try child.run()
            try outputFile.close()
            // After the launch, whose own fds (Foundation's) stay open in this process; long
            // before the child, a whole test bundle starting, makes anything.
            let before = LeakSnapshot.take(stateDirectories: Self.stateDirectories(of: runtime.root))
            defer {
                if child.isRunning { kill(child.processIdentifier, SIGKILL) }
                child.waitUntilExit()
            }

            // Up to 60 s: under emulation (make test-vm) the test bundle takes long to start.
            let clock = ContinuousClock()
            let startDeadline = clock.now.advanced(by: .seconds(60))
            var pids: [Int32] = []
            while pids.count < 3 && clock.now < startDeadline && child.isRunning {
                pids = runningPIDs(in: runtime.root)
                if pids.count < 3 { try await Task.sleep(for: .milliseconds(50)) }
            }
            try #require(pids.count == 3, "the child session did not start its 3 fixtures: \(String(decoding: FileManager.default.contents(atPath: output.path + "/output") ?? Data(), as: UTF8.self).suffix(3000))")

            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()
            let killedAt = clock.now
            while !pids.allSatisfy(OwnerDeathTests().isGone) && clock.now - killedAt < .seconds(2) {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(pids.allSatisfy(OwnerDeathTests().isGone), "fixture processes outlived their session by 2 s: \(pids.filter { !OwnerDeathTests().isGone($0) })")

            // The next session's first use of the runtime removes the rest.
            _ = try ContainerRuntime(root: runtime.root)
            #expect(runtime.list(all: true, labels: ["fixture-test": Self.label]).isEmpty)
            #expect(try runtime.networks.inspect(network).endpoints == endpointsBefore,
                    "the network still leases addresses to the dead session's containers")
            let leaks = await LeakSnapshot.expectClean(since: before)
            #expect(leaks.isEmpty, "\(leaks)")
        }
    }

    /// A container labelled with an ended session is removed even though it never ran (an
    /// unlabelled one would be adopted), and so is the session's directory; the CLI says what.
    @Test func systemPruneSessionsRemovesWhatEndedSessionsLeftAndSaysWhat() async throws {
        let runtime = try await TestRuntime.shared()
        // pid_max is at most 4194304, so no process ever has this pid.
        let ended = "4194304-1"
        let created = try await CLITests().berth(["create", "--label", "\(ContainerRuntime.sessionLabel)=\(ended)", "busybox", "true"])
        #expect(created.status == 0, "\(created.error)")
        let id = created.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let sessionDirectory = runtime.root + "/sessions/" + ended
        try FileManager.default.createDirectory(atPath: sessionDirectory + "/files", withIntermediateDirectories: true)

        let pruned = try await CLITests().berth(["system", "prune", "--sessions"])
        #expect(pruned.status == 0, "\(pruned.error)")
        let lines = pruned.output.split(separator: "\n").map(String.init)
        #expect(lines.contains("container \(id)") && lines.contains("session directory \(ended)"), "\(lines)")
        #expect(!FileManager.default.fileExists(atPath: runtime.root + "/containers/" + id))
        #expect(!FileManager.default.fileExists(atPath: sessionDirectory))
        #expect(try await CLITests().berth(["system", "prune", "--sessions"]).output.isEmpty)
    }

    /// The second process of the SIGKILL test: three fixtures (one on a bridge network with a
    /// published port, so with a veth, a lease, a network namespace and a port listener), then
    /// it waits to be killed. Enabled only when that test starts it.
    @Test(.enabled(if: ProcessInfo.processInfo.environment[childRootVariable] != nil))
    func fixturesOfAKilledSession() async throws {
        let environment = ProcessInfo.processInfo.environment
        let runtime = try ContainerRuntime(root: try #require(environment[Self.childRootVariable]))
        var web = webFixture(on: try #require(environment[Self.childNetworkVariable]))
        web.configuration.labels["fixture-test"] = Self.label
        try await withFixtures([sleeper(Self.label), sleeper(Self.label), web], in: runtime) { _ in
            try await Task.sleep(for: .seconds(600))
        }
    }

    /// The main processes of the running containers labelled ``label``, from their records.
    private func runningPIDs(in root: String) -> [Int32] {
        let containers = root + "/containers"
        return ((try? FileManager.default.contentsOfDirectory(atPath: containers)) ?? []).compactMap { id in
            guard let data = FileManager.default.contents(atPath: "\(containers)/\(id)/container.json"),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let configuration = json["configuration"] as? [String: Any],
                  (configuration["labels"] as? [String: String])?["fixture-test"] == Self.label,
                  let state = json["state"] as? [String: Any], state["status"] as? String == "running"
            else { return nil }
            return (state["pid"] as? NSNumber)?.int32Value
        }
    }
}
