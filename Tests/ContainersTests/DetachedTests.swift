import Containers
import ContainerKernel
import Foundation
import Networking
import Testing
import TestSupport

/// Detached containers: held by berth-supervisor, they outlive the process that started them,
/// and any process on the root lists, reads, execs into, stops and removes them.
@Suite(.serialized)
struct DetachedTests {
    /// Live (not zombie) supervisors of containers under `root`.
    func liveSupervisors(of root: String) -> [Int32] {
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        return pids.filter { pid in
            guard let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
            else { return false }
            let words = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            let state = stat.split(separator: ")").last?.split(separator: " ").first
            return words.first?.hasSuffix("berth-supervisor") == true && words.contains { $0.hasPrefix(root + "/") }
                && state != "Z"
        }
    }

    /// Polls for up to 30 s: the berth CLI takes some 20 s to get a container running in the
    /// emulated 6.1 guest, well under a second here.
    func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        for _ in 0..<600 {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    @Test func anotherProcessListsReadsExecsStopsAndRemovesADetachedContainer() async throws {
        let runtime = try await TestRuntime.shared()
        // Foundation's Process opens sockets of its own on first use: not ours to count.
        _ = try await CLITests().berth(["ps"])
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let name = "detached-\(getpid())"

        // Process A: `berth run -d` starts the container and exits.
        let started = try await CLITests().berth(["run", "-d", "--name", name, "busybox", "sh", "-c",
                                                  "echo ready; echo oops >&2; exec sleep 60"])
        #expect(started.status == 0, "\(started.error)")
        let id = started.output.trimmingCharacters(in: .newlines)
        #expect(id.count == 64)

        // Process B (this one) finds it running, reads its log, execs into it, stops and removes it.
        let container = try #require(runtime.list().first { $0.name == name }, "the detached container is not listed")
        #expect(container.id == id)
        #expect(container.state.status == .running)
        #expect(try await eventually {
            var entries: [LogEntry] = []
            for await entry in container.logs() { entries.append(entry) }
            return entries.contains { $0.log == "ready\n" && $0.stream == .stdout }
                && entries.contains { $0.log == "oops\n" && $0.stream == .stderr }
        }, "the supervisor's log has no output")
        let hostname = try await container.exec(["cat", "/etc/hostname"])
        #expect(hostname.status == .exited(0))
        #expect(hostname.standardOutput == String(id.prefix(12)) + "\n")
        #expect(try container.stats().cgroup.pidsCurrent ?? 0 >= 1)

        try await container.pause()
        #expect(container.state.status == .paused)
        try await container.resume()
        let status = try await container.stop(timeout: .milliseconds(500))
        // sleep as pid 1 has no SIGTERM handler, so the kernel ignores SIGTERM: SIGKILL ends it.
        #expect(status == .signaled(.kill, coreDumped: false))
        #expect(container.state.status == .exited)
        #expect(container.state.exitCode == 137)
        try await container.remove()
        #expect(!runtime.list(all: true).contains { $0.name == name })
        #expect(liveSupervisors(of: runtime.root).isEmpty)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// Where `vm.memfd_noexec` forbids executable memfds (Linux 6.3 and later, per pid
    /// namespace), the embedded supervisor cannot run from its sealed memfd: a detached start is
    /// refused naming the setting, and leaves no container behind.
    @Test func aDetachedStartUnderMemfdNoexecNamesTheSetting() async throws {
        guard FileManager.default.fileExists(atPath: "/proc/sys/vm/memfd_noexec") else { return }  // before 6.3
        let runtime = try await TestRuntime.shared()
        _ = try await CLITests().berth(["ps"])
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let hostSetting = try String(contentsOfFile: "/proc/sys/vm/memfd_noexec", encoding: .utf8)
        let name = "memfd-noexec-\(getpid())"
        // A new pid namespace whose memfd_noexec is 2; the host's stays as it is.
        let wrapper = ["/usr/bin/unshare", "--pid", "--fork", "/bin/sh", "-c",
                       "echo 2 > /proc/sys/vm/memfd_noexec && exec \"$0\" \"$@\""]
        let started = try await CLITests().berth(["run", "-d", "--name", name, "busybox", "sleep", "60"], wrapper: wrapper)
        #expect(started.status != 0)
        #expect(started.error.contains("vm.memfd_noexec"), "\(started.error)")
        #expect(try String(contentsOfFile: "/proc/sys/vm/memfd_noexec", encoding: .utf8) == hostSetting)
        #expect(!runtime.list(all: true).contains { $0.name == name })
        #expect(liveSupervisors(of: runtime.root).isEmpty)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// An embedded container of another live process (`berth run` in the foreground): this
    /// process sees it, execs into it and signals it; its owner alone changes its state.
    @Test func anEmbeddedContainerOfAnotherProcessIsObservedNotOwned() async throws {
        let runtime = try await TestRuntime.shared()
        let name = "observed-\(getpid())"
        let owner = try CLITests.launch(["run", "--name", name, "busybox", "sleep", "30"], root: runtime.root)
        defer { if owner.isRunning { kill(owner.processIdentifier, SIGKILL) } }

        var found: Container?
        #expect(try await eventually {
            found = runtime.list().first { $0.name == name && $0.state.status == .running }
            return found != nil
        })
        let container = try #require(found)
        #expect(try await container.exec(["hostname"]).standardOutput == String(container.id.prefix(12)) + "\n")
        for refused in [{ try await container.pause() }, { try await container.remove(force: true) }] as [() async throws -> Void] {
            do {
                try await refused()
                Issue.record("an observer changed the owner's container")
            } catch let error as ContainerError {
                #expect(error.code == .notOwner, "\(error)")
            }
        }
        try container.kill(.kill)
        #expect(try await container.wait() == .signaled(.kill, coreDumped: false))
        owner.waitUntilExit()
        #expect(owner.terminationStatus == 137)
        // The owner has exited: the next look adopts the exited container, which can be removed.
        try await runtime.container(name).remove()
    }

    @Test func killingTheSupervisorEndsTheContainer() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let container = try await runtime.run(busybox(["sleep", "60"]) { $0.lifetime = .detached })
        let supervisors = liveSupervisors(of: container.directory)
        #expect(supervisors.count == 1)
        let pid = try #require(container.state.pid)
        kill(try #require(supervisors.first), SIGKILL)
        // The container dies through its parent-death signal; nothing recorded a status.
        #expect(try await container.wait() == .signaled(.kill, coreDumped: false))
        #expect(kill(pid, 0) != 0 || (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.contains(") Z") == true)
        try await container.remove()
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test func aNewRuntimeOnTheRootAdoptsARunningDetachedContainer() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["sleep", "60"]) { $0.lifetime = .detached })
        let other = try ContainerRuntime(root: runtime.root)
        let adopted = try other.container(container.id)
        #expect(adopted.state.status == .running)
        #expect(adopted.state.pid == container.state.pid)
        try adopted.kill()
        #expect(try await adopted.wait() == .signaled(.kill, coreDumped: false))
        // The runtime that started it sees the same end.
        #expect(try await container.wait() == .signaled(.kill, coreDumped: false))
        try await adopted.remove()
        #expect(throws: ContainerError.self) { try runtime.container(container.id) }
    }

    nonisolated(unsafe) static let refused: [(String, (inout ContainerConfiguration) -> Void)] = [
        ("ports", { $0.ports = [PortMapping(hostPort: 0, containerPort: 80)] }),
        ("terminal", { $0.terminal = true }),
        ("stdin", { $0.interactive = true }),
    ]

    @Test(arguments: 0..<refused.count)
    func whatNeedsTheOwningProcessIsRefusedForADetachedContainer(_ index: Int) async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let (what, configure) = Self.refused[index]
        let container = try await runtime.create(busybox(["true"]) { configuration in
            configuration.lifetime = .detached
            configure(&configuration)
        })
        await #expect(throws: ContainerError.self, "\(what)") { try await container.start() }
        #expect(container.state.status == .created)
        try await container.remove()
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// Attached containers are logged by LogFile (Swift), detached ones by berth-supervisor (C):
    /// the same bytes give the same lines, byte for byte but for the time, which is RFC 3339
    /// with nanoseconds in UTC in both. The bytes: a quote, a backslash, tab, CR, ESC, DEL, a
    /// stray 0xFF, a cut-short sequence, a euro sign, ü, a lone control character, and a last
    /// line without its newline.
    @Test func attachedAndDetachedContainersLogTheSameBytesAlike() async throws {
        let runtime = try await TestRuntime.shared()
        let script = #"printf 'q"\\ tab\t cr\r esc\033 del\177 bad\377 cut\342\202 euro\342\202\254 ctl\001 \303\274\nsecond line\npartial'"#
        var logs: [[String]] = []
        for lifetime in [ContainerLifetime.embedded, .detached] {
            let container = try await runtime.run(busybox(["sh", "-c", script]) { $0.lifetime = lifetime })
            #expect(try await container.wait() == .exited(0))
            let file = runtime.root + "/containers/\(container.id)/container.log"
            var lines: [String] = []
            #expect(try await eventually {
                lines = (FileManager.default.contents(atPath: file).map { String(decoding: $0, as: UTF8.self) } ?? "")
                    .split(separator: "\n").map(String.init)
                return lines.count == 3
            }, "\(lifetime): \(lines)")
            for line in lines {
                // ..."time":"2026-12-03T07:21:19.123456789Z"}
                let time = line.split(separator: "\"").dropLast().last.map(String.init) ?? ""
                #expect(time.count == 30 && time.hasSuffix("Z") && time.dropFirst(19).first == ".", "\(time)")
            }
            logs.append(lines.map { String($0[..<($0.range(of: #","time":"#)?.lowerBound ?? $0.endIndex)]) })
            var entries: [LogEntry] = []  // decoded: the times parse
            for await entry in container.logs() { entries.append(entry) }
            let expected: [String] = ["q\"\\ tab\t cr\r esc\u{1B} del\u{7F} bad\u{FFFD} cut\u{FFFD}\u{FFFD} euro€ ctl\u{01} ü\n",
                                      "second line\n", "partial"]
            #expect(entries.map(\.log) == expected)
            try await container.remove()
        }
        #expect(logs.count == 2 && logs[0] == logs[1])
        let replacement = "\u{FFFD}"
        var first = #"{"log":"q\"\\ tab\t cr\r esc\u001b del\u007f bad"#
        first += replacement + " cut" + replacement + replacement
        first += #" euro€ ctl\u0001 ü\n","stream":"stdout""#
        #expect(logs.first?.first == first)
    }
}
