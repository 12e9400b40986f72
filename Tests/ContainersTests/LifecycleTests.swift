import Containers
import ContainerKernel
import FoundationEssentials
import Glibc
import Images
import Testing
import TestSupport

@Suite(.serialized)
struct ContainerLifecycleTests {
    enum Operation: String, CaseIterable, Sendable { case start, stop, kill, pause, resume, exec, stats, update, remove }
    enum State: String, CaseIterable, Sendable { case created, running, paused, exited }

    /// Which operations succeed in which state; everything else is a typed invalid-state error.
    static func allowed(_ operation: Operation, in state: State) -> Bool {
        switch (operation, state) {
        // As `docker start`: starting a running container does nothing and succeeds.
        case (.start, .created), (.start, .exited), (.start, .running): true
        case (.stop, .running), (.stop, .paused), (.kill, .running), (.kill, .paused): true
        case (.pause, .running), (.resume, .paused): true
        case (.exec, .running): true
        case (.stats, .running), (.stats, .paused), (.update, .running), (.update, .paused): true
        case (.remove, .created), (.remove, .exited): true
        default: false
        }
    }

    func container(in state: State, lifetime: ContainerLifetime) async throws -> Container {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.create(busybox(["/bin/probe", "sleep", "30"]) { $0.lifetime = lifetime })
        switch state {
        case .created: break
        case .running: try await container.start()
        case .paused:
            try await container.start()
            try await container.pause()
        case .exited:
            try await container.start()
            try container.kill()
            _ = try await container.wait()
        }
        #expect(container.state.status.rawValue == state.rawValue)
        return container
    }

    func perform(_ operation: Operation, on container: Container) async throws {
        switch operation {
        case .start: try await container.start()
        case .stop: try await container.stop(timeout: .milliseconds(200))
        case .kill: try container.kill()
        case .pause: try await container.pause()
        case .resume: try await container.resume()
        case .exec: _ = try await container.exec(["/bin/true"])
        case .stats: _ = try container.stats()
        case .update: try container.update(resources: CgroupResources())
        case .remove: try await container.remove()
        }
    }

    /// Every operation, in every state, of embedded and of detached containers.
    static let matrix = ContainerLifetime.allCases.flatMap { lifetime in
        Operation.allCases.flatMap { operation in State.allCases.map { (operation, $0, lifetime) } }
    }

    @Test(arguments: matrix)
    func everyOperationInEveryStateSucceedsOrNamesTheState(
        _ operation: Operation, _ state: State, _ lifetime: ContainerLifetime
    ) async throws {
        let container = try await container(in: state, lifetime: lifetime)
        defer { Task { try? await container.remove(force: true) } }
        do {
            try await perform(operation, on: container)
            #expect(Self.allowed(operation, in: state), "\(operation) in \(state) should have failed")
        } catch let error as ContainerError {
            #expect(!Self.allowed(operation, in: state), "\(operation) in \(state): \(error)")
            #expect(error.code == .invalidState)
            #expect("\(error)".contains(state.rawValue), "\(error)")
        }
        try? await container.remove(force: true)
    }

    @Test func aRelativeRootIsBelowTheWorkingDirectory() throws {
        let directory = try TemporaryDirectory(prefix: "relative")
        defer { try? directory.remove() }
        let previous = FileManager.default.currentDirectoryPath
        #expect(FileManager.default.changeCurrentDirectoryPath(directory.path))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        let runtime = try ContainerRuntime(root: "state")
        #expect(runtime.root == directory.path + "/state")
        #expect(FileManager.default.fileExists(atPath: directory.path + "/state/containers"))
    }

    /// A record written before a field existed still loads, with the field's default.
    @Test func aConfigurationWithoutNewerFieldsDecodesWithTheirDefaults() throws {
        let old = try JSONDecoder().decode(ContainerConfiguration.self, from: Data(#"{"image":"busybox","environment":["A=1"],"stopTimeout":3}"#.utf8))
        #expect(old.image == "busybox" && old.environment == ["A=1"] && old.stopTimeout == 3)
        #expect(old.lifetime == .embedded && !old.initProcess && old.command == nil && old.pullPolicy == .missing)

        var full = busybox(["sleep", "1"]) {
            $0.lifetime = .detached
            $0.initProcess = true
            $0.mounts = [.tmpfs(target: "/run", options: "size=1m")]
            $0.restartPolicy = .onFailure(maximumRetries: 2)
        }
        full.labels = ["a": "b"]
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let once = try encoder.encode(full)
        #expect(try encoder.encode(try JSONDecoder().decode(ContainerConfiguration.self, from: once)) == once)
    }

    @Test func attachReadsTheOutputAndWritesStdin() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["sh", "-c", "while read line; do echo got $line; done; echo eof"]) {
            $0.interactive = true
        })
        let attachment = try container.attach()
        let input = try #require(attachment.input)
        try await input.write("ping\n")
        var iterator = attachment.output.makeAsyncIterator()
        #expect(await iterator.next()?.log == "got ping\n")
        await input.close()
        #expect(await iterator.next()?.log == "eof\n")
        #expect(try await container.wait() == .exited(0))
        #expect(throws: ContainerError.self) { try container.attach() }
        try await container.remove()
    }

    /// Cancelling the task that awaits `run`, at different moments: the container is stopped
    /// and removed, and nothing is left.
    @Test(arguments: [0, 5, 50])
    func cancellingRunRemovesTheContainer(afterMilliseconds delay: Int) async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let name = "cancelled-\(delay)"
        let task = Task { try await runtime.run(busybox(["sleep", "60"]) { $0.name = name }) }
        if delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }
        task.cancel()
        switch await task.result {
        case .success(let container):
            // The run finished before the cancellation arrived: the caller owns it.
            try await container.remove(force: true)
        case .failure(let error):
            #expect((error as? ContainerError)?.code == .cancelled, "\(error)")
        }
        #expect(!runtime.list(all: true).contains { $0.name == name })
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test func cancellingWithRunningRemovesTheContainer() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let entered = AsyncStream<Container>.makeStream()
        let task = Task {
            try await runtime.withRunning(busybox(["sleep", "60"])) { container in
                entered.continuation.yield(container)
                try await Task.sleep(for: .seconds(60))
            }
        }
        var iterator = entered.stream.makeAsyncIterator()
        let container = try #require(await iterator.next())
        task.cancel()
        _ = await task.result
        #expect(throws: ContainerError.self) { try runtime.container(container.id) }
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// An orphan's exit is reaped by the init; without one, pid 1 is a program that never
    /// waits (here `sleep`), and the orphan stays a zombie.
    @Test(arguments: [true, false])
    func theInitReapsOrphansAndPassesTheStopSignalOn(_ initProcess: Bool) async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["sh", "-c", "(sleep 0.1 &); exec sleep 60"]) {
            $0.initProcess = initProcess
        })
        try await Task.sleep(for: .milliseconds(500))
        let processes = try await container.exec(["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; cat /proc/[0-9]*/stat"])
        #expect(processes.standardOutput.hasPrefix(initProcess ? "/dev/init --init -- sh -c" : "sleep 60"),
                "\(processes.standardOutput)")
        let zombies = processes.standardOutput.components(separatedBy: ") Z ").count - 1
        #expect(initProcess ? zombies == 0 : zombies == 1, "\(processes.standardOutput)")
        // pid 1 without a handler ignores SIGTERM, so only SIGKILL ends it; the init passes
        // SIGTERM on to the command, which dies of it, and exits with 128 + 15.
        let status = try await container.stop(timeout: .seconds(initProcess ? 10 : 1))
        #expect(status == (initProcess ? .exited(143) : .signaled(.kill, coreDumped: false)))
        try await container.remove()
    }

    /// The init is bind-mounted from the root directory, and a bind mount keeps its source's
    /// `noexec`: on such a file system the start is refused by name, with nothing left behind,
    /// instead of a container whose first `execve` fails.
    @Test func anInitOnANoexecFileSystemIsRefusedByName() async throws {
        let runtime = try await TestRuntime.shared()
        let directory = runtime.root + "/supervisor"
        _ = mkdir(directory, 0o755)
        guard mount("tmpfs", directory, "tmpfs", UInt(MS_NOEXEC | MS_NOSUID | MS_NODEV), nil) == 0 else {
            throw TestSupportError("mount a noexec tmpfs on \(directory): errno \(errno)")
        }
        defer { umount2(directory, Int32(MNT_DETACH)) }
        let before = LeakSnapshot.take()
        let name = "noexec-init-\(getpid())"
        let error = await #expect(throws: ContainerError.self) {
            _ = try await runtime.run(busybox(["true"]) { $0.initProcess = true; $0.name = name })
        }
        #expect("\(String(describing: error))".contains("mounted noexec"), "\(String(describing: error))")
        #expect(!runtime.list(all: true).contains { $0.name == name })
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test(arguments: ContainerLifetime.allCases)
    func exitCodesSignalsAndOOMAreDistinct(_ lifetime: ContainerLifetime) async throws {
        let runtime = try await TestRuntime.shared()
        let exited = try await runtime.run(busybox(["/bin/probe", "exit", "7"]) { $0.lifetime = lifetime })
        #expect(try await exited.wait() == .exited(7))
        #expect(exited.state.exitCode == 7)
        let killed = try await runtime.run(busybox(["/bin/probe", "sleep", "30"]) { $0.lifetime = lifetime })
        try killed.kill(.kill)
        #expect(try await killed.wait() == .signaled(.kill, coreDumped: false))
        let oom = try await runtime.run(busybox(["/bin/probe", "alloc", "64"]) {
            $0.lifetime = lifetime
            $0.resources.memoryLimit = 32 << 20
            $0.resources.memorySwapLimit = 32 << 20
        })
        #expect(try await oom.wait() == .oomKilled)
        #expect(oom.state.oomKilled)
        for container in [exited, killed, oom] { try await container.remove() }
    }

    @Test func imageConfigurationIsAppliedAndOverridable() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["/bin/sh", "-c", "echo $FROM_IMAGE $EXTRA; hostname; pwd"]) {
            $0.environment = ["EXTRA=mine"]
            $0.hostname = "fixture"
            $0.workingDirectory = "/tmp"
        })
        _ = try await container.wait()
        let text = await collect(container.logs()).map(\.log).joined()
        #expect(text == "yes mine\nfixture\n/tmp\n")
        try await container.remove()
    }

    @Test func missingProgramIsATypedErrorAndLeavesTheContainerExited() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.create(busybox(["/bin/nope"]))
        await #expect(throws: ContainerError.self) { try await container.start() }
        do {
            try await container.start()
        } catch {
            #expect(error.kernelError?.stage == .exec)
            #expect("\(error)".contains("exec \"/bin/nope\": no such file or directory"), "\(error)")
        }
        #expect(container.state.status == .created)
        try await container.remove()
    }

    @Test func namesAreUniqueAndRenamable() async throws {
        let runtime = try await TestRuntime.shared()
        let first = try await runtime.create(busybox(["/bin/true"]) { $0.name = "unique-one" })
        await #expect(throws: ContainerError.self) { _ = try await runtime.create(busybox(["/bin/true"]) { $0.name = "unique-one" }) }
        try first.rename(to: "unique-two")
        #expect(try runtime.container("unique-two").id == first.id)
        try await first.remove()
        #expect(throws: ContainerError.self) { _ = try runtime.container("unique-two") }
    }

    @Test func execJoinsTheContainer() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["/bin/probe", "sleep", "30"]) { $0.hostname = "exec-host" })
        let result = try await container.exec(["/bin/sh", "-c", "hostname; echo $FROM_IMAGE; cat"], input: Array("piped".utf8))
        #expect(result.status == .exited(0))
        #expect(result.standardOutput == "exec-host\nyes\npiped")
        let missing = try? await container.exec(["nope"])
        #expect(missing == nil)
        // Many at once.
        try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<8 { group.addTask { try await container.exec(["/bin/echo", "\(index)"]).standardOutput } }
            var outputs: [String] = []
            for try await output in group { outputs.append(output) }
            #expect(outputs.sorted() == (0..<8).map { "\($0)\n" }.sorted())
        }
        try await container.remove(force: true)
    }

    @Test func logsFollowWhileRunningAndStayAfterExit() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["/bin/sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.1; done; echo oops >&2"]))
        var followed: [String] = []
        for await entry in container.logs(follow: true) { followed.append(entry.log) }
        #expect(followed == ["line1\n", "line2\n", "line3\n", "oops\n"])
        let after = await collect(container.logs())
        #expect(after.map(\.stream) == [.stdout, .stdout, .stdout, .stderr])
        #expect(await collect(container.logs(tail: 1)).map(\.log) == ["oops\n"])
        try await container.remove()
    }

    @Test func statsShowMemoryRisingAndPausedCountersStop() async throws {
        let runtime = try await TestRuntime.shared()
        let idle = try await runtime.run(busybox(["/bin/probe", "sleep", "30"]))
        let before = try idle.stats().cgroup.memoryUsage ?? 0
        try await idle.remove(force: true)
        // A tmpfs file is charged to the container's memory cgroup and stays while it runs.
        let busy = try await runtime.run(busybox(["/bin/sh", "-c", "head -c 50000000 /dev/zero > /dev/shm/fill; sleep 30"]))
        // Until the file is written: half a second here, many under emulation (the 6.1 guest).
        var after: UInt64 = 0
        for _ in 0..<300 where after <= before + (32 << 20) {
            try await Task.sleep(for: .milliseconds(100))
            after = try busy.stats().cgroup.memoryUsage ?? 0
        }
        #expect(after > before + (32 << 20), "before \(before) after \(after)")
        try await busy.remove(force: true)

        let counter = try await runtime.run(busybox(["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; done"]))
        try await Task.sleep(for: .milliseconds(200))
        try await counter.pause()
        let cpu1 = try counter.stats().cgroup.cpuUsageNanoseconds
        try await Task.sleep(for: .milliseconds(300))
        let cpu2 = try counter.stats().cgroup.cpuUsageNanoseconds
        #expect(cpu1 == cpu2)
        try await counter.resume()
        try await Task.sleep(for: .milliseconds(200))
        let cpu3 = try counter.stats().cgroup.cpuUsageNanoseconds ?? 0
        #expect(cpu3 > (cpu2 ?? 0))
        try await counter.remove(force: true)
    }

    @Test func raisingTheMemoryLimitLiveLetsAnAllocationSucceed() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["/bin/probe", "sleep", "30"]) {
            $0.resources.memoryLimit = 16 << 20
            $0.resources.memorySwapLimit = 16 << 20
        })
        let small = try await container.exec(["/bin/probe", "alloc", "32"])
        #expect(small.status != .exited(0))
        var raised = CgroupResources()
        raised.memoryLimit = 128 << 20
        raised.memorySwapLimit = 128 << 20
        try container.update(resources: raised)
        let large = try await container.exec(["/bin/probe", "alloc", "32"])
        #expect(large.status == .exited(0))
        try await container.remove(force: true)
    }

    @Test(arguments: ContainerLifetime.allCases)
    func onFailureRestartsThreeTimes(_ lifetime: ContainerLifetime) async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.create(busybox(["/bin/probe", "exit", "1"]) {
            $0.restartPolicy = .onFailure(maximumRetries: 3)
            $0.lifetime = lifetime
        })
        let events = runtime.events()
        try await container.start()
        var starts = 0
        for await event in events where event.containerID == container.id {
            if event.action == .start { starts += 1 }
            if event.action == .die && starts == 4 { break }
        }
        #expect(starts == 4)
        try await Task.sleep(for: .milliseconds(300))
        #expect(container.state.restartCount == 3)
        #expect(container.state.status == .exited)
        try await container.remove(force: true)
    }

    @Test func healthcheckTurnsHealthyThenUnhealthyWithEvents() async throws {
        let runtime = try await TestRuntime.shared()
        let events = runtime.events()
        let container = try await runtime.run(busybox(["/bin/probe", "sleep", "30"]) {
            $0.healthcheck = HealthcheckConfiguration(command: ["/bin/sh", "-c", "test ! -e /tmp/sick"],
                                                      interval: .milliseconds(100), timeout: .seconds(1), retries: 2)
        })
        var seen: [String] = []
        for await event in events where event.containerID == container.id && event.action == .healthStatus {
            let health = event.attributes["health"] ?? ""
            seen.append(health)
            if health == "healthy" { _ = try await container.exec(["/bin/touch", "/tmp/sick"]) }
            if health == "unhealthy" { break }
        }
        #expect(seen == ["healthy", "unhealthy"])
        #expect(container.state.health == .unhealthy)
        try await container.remove(force: true)
    }

    @Test func withRunningRemovesTheContainerEvenWhenTheBodyThrows() async throws {
        struct Boom: Error {}
        let runtime = try await TestRuntime.shared()
        // The static API uses the shared runtime on BERTH_ROOT.
        setenv("BERTH_ROOT", runtime.root, 1)
        let shared = try ContainerRuntime.shared()
        let output = try await Container.withRunning(image: "busybox", command: ["/bin/probe", "sleep", "30"]) { container in
            try await container.exec(["/bin/echo", "inside"]).standardOutput
        }
        #expect(output == "inside\n")
        await #expect(throws: Boom.self) {
            try await Container.withRunning(image: "busybox", command: ["/bin/probe", "sleep", "30"]) { _ in throw Boom() }
        }
        #expect(shared.list(all: true).isEmpty)
    }

    @Test func fiveHundredRunRemoveCyclesLeaveNothingBehind() async throws {
        let runtime = try await TestRuntime.shared()
        let warm = try await runtime.run(busybox(["/bin/true"]))
        _ = try await warm.wait()
        try await warm.remove()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        for index in 0..<500 {
            let container = try await runtime.run(busybox(["/bin/probe", "exit", "\(index % 2)"]))
            #expect(try await container.wait() == .exited(Int32(index % 2)))
            try await container.remove()
        }
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }
}

func collect<S: AsyncSequence & Sendable>(_ sequence: S) async -> [S.Element] where S.Element: Sendable {
    var all: [S.Element] = []
    do { for try await element in sequence { all.append(element) } } catch {}
    return all
}

extension ContainerLifecycleTests {
    @Test func anImageInUseIsNotRemovedUnlessForced() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.create(busybox(["/bin/true"]))
        try runtime.images.tag("busybox:latest", as: try ImageReference(parsing: "busybox:in-use"))
        #expect(throws: ContainerError.self) { _ = try runtime.removeImage("busybox:in-use") }
        #expect(try runtime.removeImage("busybox:in-use", force: true) == ["docker.io/library/busybox:in-use"])
        try await container.remove()
    }
}

extension ContainerLifecycleTests {
    @Test func diffCommitRunRoundTrip() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["/bin/sh", "-c", "echo changed > /etc/motd-new; rm /etc/passwd; rm -r /var; mkdir /var; echo new > /var/file"]))
        #expect(try await container.wait() == .exited(0))
        let changes = try container.changes().map(\.description)
        #expect(changes.contains("A /etc/motd-new"), "\(changes)")
        #expect(changes.contains("D /etc/passwd"), "\(changes)")
        #expect(!changes.contains("A /etc/hosts"), "the runtime's own mount points are not changes: \(changes)")
        let image = try await container.commit(as: "committed:test", comment: "round trip")
        #expect(image.diffIDs.count == 2)
        let check = try await runtime.run(busybox(["/bin/sh", "-c", "cat /etc/motd-new; test -e /etc/passwd || echo gone; ls /var"]) {
            $0.image = "committed:test"
        })
        #expect(try await check.wait() == .exited(0))
        let output = await collect(check.logs()).map(\.log).joined()
        #expect(output == "changed\ngone\nfile\n")
        try await check.remove()
        try await container.remove()
        _ = try runtime.removeImage("committed:test")
    }
}
