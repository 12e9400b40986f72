import Containers
import Foundation
import Glibc
import Testing
import TestSupport

/// Embedded containers die with the process that owns them, and the next runtime on the same
/// root removes what that process left.
@Suite(.serialized)
struct OwnerDeathTests {
    /// The record of the container named `name` under `root`, as JSON.
    func record(named name: String, in root: String) -> (id: String, status: String, pid: Int32?)? {
        let containers = root + "/containers"
        for id in (try? FileManager.default.contentsOfDirectory(atPath: containers)) ?? [] {
            guard let data = FileManager.default.contents(atPath: "\(containers)/\(id)/container.json"),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  json["name"] as? String == name, let state = json["state"] as? [String: Any]
            else { continue }
            return (id, state["status"] as? String ?? "", (state["pid"] as? NSNumber)?.int32Value)
        }
        return nil
    }

    func isGone(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
    }

    @Test func sigkilledOwnersContainersAreGoneAndTheNextRuntimeCleansUp() async throws {
        let runtime = try await TestRuntime.shared()
        let name = "orphan-\(getpid())"
        let owner = try CLITests.launch(["run", "--name", name, "busybox", "/bin/probe", "sleep", "60"], root: runtime.root)
        // Whatever fails below, the owner must not outlive the test: its container would be
        // observed (and counted as a leak) by the tests after this one.
        defer {
            if owner.isRunning { kill(owner.processIdentifier, SIGKILL) }
            owner.waitUntilExit()
        }

        // Up to 30 s: under emulation (make test-vm) the CLI takes several seconds to start.
        var running: (id: String, status: String, pid: Int32?)?
        for _ in 0..<600 {
            if let found = record(named: name, in: runtime.root), found.status == "running", found.pid != nil {
                running = found
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let container = try #require(running, "the container never ran")
        let pid = try #require(container.pid)

        kill(owner.processIdentifier, SIGKILL)
        owner.waitUntilExit()
        let killedAt = ContinuousClock.now
        while !isGone(pid) && ContinuousClock.now - killedAt < .seconds(2) {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(isGone(pid), "the container outlived its owner by 2 s")

        // The next runtime on the root removes the dead owner's container: state, mounts, cgroup.
        let directory = runtime.root + "/containers/" + container.id
        _ = try ContainerRuntime(root: runtime.root)
        #expect(!FileManager.default.fileExists(atPath: directory))
        let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        #expect(!mounts.contains(container.id))
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/berth/\(container.id)"))
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/pids/berth/\(container.id)"))
    }
}

extension OwnerDeathTests {
    @Test func createdContainersOfAnExitedOwnerAreAdoptedByTheNextRuntime() async throws {
        let runtime = try await TestRuntime.shared()
        let name = "adopted-\(getpid())"
        let create = try CLITests.launch(["create", "--name", name, "busybox", "/bin/echo", "adopted"], root: runtime.root)
        create.waitUntilExit()
        #expect(create.terminationStatus == 0)

        let next = try ContainerRuntime(root: runtime.root)
        let container = try next.container(name)
        #expect(container.state.status == .created)
        try await container.start()
        #expect(try await container.wait() == .exited(0))
        var output = ""
        for await entry in container.logs() { output += entry.log }
        #expect(output == "adopted\n")
        try await container.remove()
    }
}
