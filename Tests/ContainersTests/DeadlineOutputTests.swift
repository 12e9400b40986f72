import Containers
import ContainerKernel
import FoundationEssentials
import Glibc
import Synchronization
import Testing
import TestSupport

/// Deadlines and cancellation of everything that waits on a container, and its output as the
/// caller asks for it: streamed, collected with a bound, or logged (with rotation marked).
@Suite(.serialized)
struct DeadlineOutputTests {
    enum Program: String, CaseIterable, Sendable { case sleeping, ignoringTerm, stopped, frozen }

    /// The run's deadline kills it whatever the program does, even when it cannot act on a
    /// signal; the run ends as timed out, which no signal of the program's own can produce,
    /// and is not restarted.
    @Test(arguments: Program.allCases)
    func theDeadlineKillsTheRunAndReportsItTimedOut(_ program: Program) async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let command = program == .ignoringTerm ? ["sh", "-c", "trap '' TERM; sleep 60"] : ["sleep", "60"]
        let container = try await runtime.run(busybox(command) {
            $0.timeout = .seconds(1)
            $0.restartPolicy = .always
        })
        switch program {
        case .sleeping: break
        case .ignoringTerm: try container.kill(.terminate)
        case .stopped: try container.kill(.stop)
        case .frozen: try await container.pause()
        }
        #expect(try await container.wait() == .timedOut)
        #expect(container.state.status == .exited)
        #expect(container.state.exitCode == 124)
        try await container.remove()
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// A wait's own deadline gives up the wait, not the container.
    @Test func waitGivesUpAtItsDeadlineAndLeavesTheContainerRunning() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["sleep", "60"]))
        await #expect(throws: ContainerError.self) { try await container.wait(timeout: .milliseconds(100)) }
        do {
            try await container.wait(timeout: .milliseconds(100))
        } catch {
            #expect(error.code == .timeout)
        }
        #expect(container.state.status == .running)
        try container.kill()
        #expect(try await container.wait(timeout: .seconds(30)) == .signaled(.kill, coreDumped: false))
        try await container.remove()
    }

    /// Cancelling a task that waits for the container ends the wait at once; the container runs on.
    @Test func cancellingAWaitEndsItAndLeavesTheContainerRunning() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let container = try await runtime.run(busybox(["sleep", "60"]))
        let waiter = Task { try await container.wait() }
        waiter.cancel()
        await #expect(throws: ContainerError.self) { try await waiter.value }
        #expect(container.state.status == .running)
        try await container.remove(force: true)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// Cancelling `withRunning { wait }` at several moments (while creating, starting, waiting)
    /// leaves nothing: no process, cgroup, mount, fd or state.
    @Test(arguments: [0, 2, 20, 200])
    func cancellingRunAndWaitLeavesNothing(afterMilliseconds delay: Int) async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let task = Task { try await runtime.withRunning(busybox(["sleep", "60"])) { try await $0.wait() } }
        if delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }
        task.cancel()
        await #expect(throws: (any Error).self) { try await task.value }
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// Cancelling an exec kills the command and waits for it: nothing of it stays in the container.
    @Test(arguments: [0, 20, 200])
    func cancellingAnExecKillsTheCommand(afterMilliseconds delay: Int) async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let container = try await runtime.run(busybox(["sleep", "60"]))
        let exec = Task { try await container.exec(["sleep", "61"]) }
        if delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }
        exec.cancel()
        switch await exec.result {
        case .success(let result): Issue.record("the exec ran to its end: \(result)")
        case .failure(let error): #expect((error as? ContainerError)?.code == .cancelled, "\(error)")
        }
        #expect(try !container.top().contains { $0.command == "sleep 61" })
        try await container.remove(force: true)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// An exec's deadline kills the command; its result says so.
    @Test func anExecDeadlineKillsTheCommand() async throws {
        let runtime = try await TestRuntime.shared()
        try await runtime.withRunning(busybox(["sleep", "60"])) { container in
            let result = try await container.exec(["sh", "-c", "echo started; exec sleep 60"], timeout: .milliseconds(500))
            #expect(result.status == .timedOut)
            #expect(result.standardOutput == "started\n")
            #expect(try !container.top().contains { $0.command == "sleep 60" && $0.pid != container.state.pid })
        }
    }

    /// A command that writes 1 GB keeps 1 MiB of it: memory stays bounded and the result says
    /// it was truncated.
    @Test func anExecWritingAGigabyteIsTruncatedAtTheLimit() async throws {
        let runtime = try await TestRuntime.shared()
        // Lives past the copy of a gigabyte, which takes minutes in the emulated 6.1 guest.
        try await runtime.withRunning(busybox(["sleep", "3600"])) { container in
            let before = residentHighWaterMark()
            let result = try await container.exec(["sh", "-c", "head -c 1073741824 /dev/zero; echo done >&2"],
                                                  outputLimit: 1 << 20)
            #expect(result.status == .exited(0))
            #expect(result.truncated)
            #expect(result.standardOutput.utf8.count + result.standardError.utf8.count == 1 << 20)
            let grown = residentHighWaterMark() - before
            #expect(grown < 256 << 20, "the test process grew by \(grown) bytes")
        }
    }

    /// Streamed output keeps stdout and stderr apart, in the order they were written.
    @Test func streamedOutputKeepsTheStreamsApartAndInOrder() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["sh", "-c", "echo a; sleep 0.2; echo b >&2; sleep 0.2; echo c"]) {
            $0.output = .stream
        })
        let chunks = try await collect(container.output())
        #expect(chunks.map(\.stream) == [.stdout, .stderr, .stdout])
        #expect(chunks.map { String(decoding: $0.bytes, as: UTF8.self) } == ["a\n", "b\n", "c\n"])
        #expect(try await container.wait() == .exited(0))
        #expect(await collect(container.logs()).isEmpty)
        #expect(throws: ContainerError.self) { try container.output() }
        try await container.remove()

        let exec = try await runtime.withRunning(busybox(["sleep", "60"])) { container in
            try await container.exec(["sh", "-c", "echo out; echo err >&2"])
        }
        #expect(exec.standardOutput == "out\n" && exec.standardError == "err\n" && !exec.truncated)
    }

    /// The main process's streamed output, collected with a limit, is truncated there.
    @Test func collectedMainOutputIsBounded() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["sh", "-c", "head -c 10000000 /dev/zero"]) { $0.output = .stream })
        let collected = try await container.output().collect(limit: 1000)
        #expect(collected.truncated && collected.standardOutput.count == 1000)
        #expect(try await container.wait() == .exited(0))
        try await container.remove()
    }

    /// A reader that falls behind holds the process back instead of filling memory: after one
    /// chunk of 64 MiB is read, the program is blocked on its pipe (still running a second later,
    /// where without back-pressure it is done in milliseconds); read on, every byte arrives.
    @Test func aSlowReaderHoldsTheProcessBackAndLosesNothing() async throws {
        let runtime = try await TestRuntime.shared()
        let size = 64 << 20
        let container = try await runtime.run(busybox(["sh", "-c", "head -c \(size) /dev/zero"]) { $0.output = .stream })
        var chunks = try container.output().makeAsyncIterator()
        var received = try #require(await chunks.next()).bytes.count
        let early = await #expect(throws: ContainerError.self) { try await container.wait(timeout: .seconds(1)) }
        #expect(early?.code == .timeout, "the program was not held back")
        while let chunk = await chunks.next() { received += chunk.bytes.count }
        #expect(received == size)
        #expect(try await container.wait() == .exited(0))
        try await container.remove()
    }

    /// A program writing 1 GB to a slow reader: the test process's resident memory, sampled
    /// while it reads, grows by far less than the gigabyte (the host holds at most 1 MiB that
    /// the reader has not taken; the program waits on its pipe for the rest), and every byte
    /// arrives. Without back-pressure the host buffers what the reader has not reached.
    @Test func aSlowReaderOfAGigabyteKeepsMemoryBounded() async throws {
        let runtime = try await TestRuntime.shared()
        let size = 1 << 30
        let container = try await runtime.run(busybox(["head", "-c", "\(size)", "/dev/zero"]) { $0.output = .stream })
        let before = residentSetSize()
        var peak = before
        var received = 0
        var chunks = 0
        for await chunk in try container.output() {
            received += chunk.bytes.count
            chunks += 1
            if chunks % 32 == 0 {
                peak = max(peak, residentSetSize())
                try await Task.sleep(for: .milliseconds(1))
            }
        }
        #expect(received == size)
        #expect(peak - before < 64 << 20, "the test process grew by \(peak - before) bytes while reading")
        #expect(try await container.wait() == .exited(0))
        try await container.remove()
    }

    /// How a reader goes away: its task cancelled while it waits for a chunk, or its iterator
    /// and the sequence dropped without cancellation.
    enum Departure: String, CaseIterable, Sendable { case cancelled, dropped }

    /// A reader that stops for good lets the process run on: the rest of its output is read
    /// and dropped on the I/O thread, without waiting for any task.
    @Test(arguments: Departure.allCases)
    func aReaderThatGoesAwayDoesNotHoldTheProcess(_ departure: Departure) async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["sh", "-c", "head -c \(64 << 20) /dev/zero"]) { $0.output = .stream })
        switch departure {
        case .cancelled:
            let reader = Task {
                var chunks = try container.output().makeAsyncIterator()
                _ = await chunks.next()
                try? await Task.sleep(for: .seconds(3600))
                _ = await chunks.next()
            }
            try await Task.sleep(for: .milliseconds(100))
            reader.cancel()
            try await reader.value
        case .dropped:
            var chunks: ContainerOutput.AsyncIterator? = try container.output().makeAsyncIterator()
            _ = await chunks?.next()
            chunks = nil
        }
        #expect(try await container.wait(timeout: .seconds(120)) == .exited(0))
        try await container.remove()
    }

    /// A reader's departure reaches the pipes on the thread that lets go, not through a task
    /// that must be scheduled: with every thread of the cooperative pool blocked (as blocking
    /// calls of other tests can hold it), the process still runs to its end. The process is
    /// watched from the blocked thread itself, through `/proc` (it is reaped on Berth's I/O
    /// thread).
    @Test func aReaderThatGoesAwayReleasesTheProcessWhileThePoolIsBlocked() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["sh", "-c", "head -c \(64 << 20) /dev/zero"]) { $0.output = .stream })
        let pid = try #require(container.state.pid)
        var chunks: ContainerOutput.AsyncIterator? = try container.output().makeAsyncIterator()
        _ = await chunks?.next()
        // The pool has a thread per CPU: hold all but this one.
        let others = max(0, sysconf(Int32(_SC_NPROCESSORS_ONLN)) - 1)
        final class Hold: Sendable {
            let blocked = Atomic(0)
            let release = Atomic(false)
        }
        let hold = Hold()
        let blockers = (0..<others).map { _ in
            Task.detached {
                hold.blocked.add(1, ordering: .sequentiallyConsistent)
                for _ in 0..<9000 where !hold.release.load(ordering: .sequentiallyConsistent) { usleep(10_000) }
            }
        }
        for _ in 0..<1000 where hold.blocked.load(ordering: .sequentiallyConsistent) < others { usleep(10_000) }
        chunks = nil
        var exited = false
        for _ in 0..<6000 where !exited {
            exited = access("/proc/\(pid)", F_OK) != 0
            if !exited { usleep(10_000) }
        }
        hold.release.store(true, ordering: .sequentiallyConsistent)
        for blocker in blockers { await blocker.value }
        #expect(exited, "the process was still held a minute after its reader went away")
        #expect(try await container.wait(timeout: .seconds(120)) == .exited(0))
        try await container.remove()
    }

    /// Rotation that deletes the oldest file leaves an entry saying how much was dropped, in
    /// an attached container's log (LogFile) and a detached one's (berth-supervisor) alike.
    @Test(arguments: [ContainerLifetime.embedded, .detached])
    func rotationMarksDroppedOutput(lifetime: ContainerLifetime) async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line$i; i=$((i+1)); done"]) {
            $0.logLimits = LogLimits(maximumSize: 4096, maximumFiles: 2)
            $0.lifetime = lifetime
        })
        #expect(try await container.wait() == .exited(0))
        let entries = await collect(container.logs())
        let markers = entries.filter { $0.dropped != nil }
        #expect(!markers.isEmpty)
        #expect(markers.allSatisfy { ($0.dropped ?? 0) > 0 && $0.stream == .stderr && $0.log.contains("dropped") })
        #expect(entries.last?.log == "line399\n")
        try await container.remove()
    }

    /// Following the log delivers a line written while it waits, and ends when the container exits.
    @Test func followingTheLogDeliversNewLinesAndEndsAtExit() async throws {
        let runtime = try await TestRuntime.shared()
        let container = try await runtime.run(busybox(["sh", "-c", "echo first; read line; echo $line; read line"]) {
            $0.interactive = true
        })
        let input = try #require(try container.attach().input)
        var followed = container.logs(follow: true).makeAsyncIterator()
        #expect(await followed.next()?.log == "first\n")
        try await input.write("second\n")
        #expect(await followed.next()?.log == "second\n")
        await input.close()
        #expect(await followed.next() == nil)
        #expect(try await container.wait() == .exited(1))
        try await container.remove()
    }
}

/// The most memory this process has had resident (`VmHWM`), in bytes.
private func residentHighWaterMark() -> Int { memoryStatus("VmHWM:") }

/// The memory this process has resident now (`VmRSS`), in bytes.
private func residentSetSize() -> Int { memoryStatus("VmRSS:") }

/// A field of `/proc/self/status` given in kB, in bytes.
private func memoryStatus(_ field: String) -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix(field) } ?? ""
    return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
}
