import ContainerKernel
import Foundation
import Glibc
import Testing
import TestSupport

/// Nothing leaks across many spawns, and spawning is safe from many tasks at once.
@Suite(.serialized)
struct LifecycleTests {
    @Test func twoHundredRunsLeaveNothingBehind() async throws {
        // Warm up the shared threads (I/O loop, spawner) so they are not counted as leaks.
        _ = try await probe("exit", "0")
        let before = LeakSnapshot.take()
        for index in 0..<200 {
            var spec = try busyboxSpec([TestRootfs.probe, "exit", "\(index % 3)"])
            spec.cgroup = CgroupPlacement(path: testCgroupPath("cycle"))
            let result = try await runToEnd(spec)
            #expect(result.status == .exited(Int32(index % 3)))
        }
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test func failedSpawnsLeaveNothingBehind() async throws {
        _ = try await probe("exit", "0")
        let before = LeakSnapshot.take()
        for _ in 0..<20 {
            var spec = try busyboxSpec(["/bin/nope"])
            spec.cgroup = CgroupPlacement(path: testCgroupPath("failed"))
            spec.io.standardInput = .pipe
            await #expect(throws: KernelError.self) { _ = try await ProcessHandle.spawn(spec) }
            var badMount = try busyboxSpec(["/bin/true"])
            badMount.mounts.append(.bind("/nonexistent-berth-source", to: "/mnt"))
            await #expect(throws: KernelError.self) { _ = try await ProcessHandle.spawn(badMount) }
        }
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// A supervisor built for another machine is refused by name before anything is spawned,
    /// instead of failing after the container's process exists with an error that says nothing.
    @Test func aSupervisorForAnotherArchitectureIsRefusedByName() async throws {
        _ = try await probe("exit", "0")
        let directory = NSTemporaryDirectory() + "berth-foreign-supervisor-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // An ELF executable whose e_machine names the other architecture: /bin/true, patched.
        var image = try #require(FileManager.default.contents(atPath: "/bin/true"))
        let other: String
        #if arch(x86_64)
        (image[18], image[19], other) = (0xB7, 0x00, "aarch64")
        #else
        (image[18], image[19], other) = (0x3E, 0x00, "x86_64")
        #endif
        let foreign = directory + "/berth-supervisor"
        #expect(FileManager.default.createFile(atPath: foreign, contents: image, attributes: [.posixPermissions: 0o755]))
        let before = LeakSnapshot.take()
        var spec = try busyboxSpec(["/bin/true"])
        spec.supervision = Supervision(executable: foreign, statusPath: directory + "/exit-status",
                                       logPath: directory + "/container.log")
        spec.cgroup = CgroupPlacement(path: testCgroupPath("foreign"))
        let error = await #expect(throws: KernelError.self) { _ = try await ProcessHandle.spawn(spec) }
        #expect(error?.code == .unsupported)
        #expect(error?.detail.contains("for \(other), not") == true, "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: directory + "/exit-status"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/container.log"))
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test func eightConcurrentTasksEachGetTheirOwnStdio() async throws {
        try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for index in 0..<8 {
                group.addTask {
                    let result = try await runToEnd(try busyboxSpec(["/bin/echo", "task-\(index)"]))
                    return (index, result.stdout)
                }
            }
            for try await (index, output) in group {
                #expect(output == "task-\(index)\n")
            }
        }
    }

    @Test func busyHostThreadsDoNotDeadlockTheChild() async throws {
        // Threads hammering malloc and locks while we clone: the child runs no code that could
        // need those locks, so every spawn completes.
        let stop = UnsafeMutablePointer<Bool>.allocate(capacity: 1)
        stop.initialize(to: false)
        defer { stop.deallocate() }
        let address = UInt(bitPattern: stop)
        var threads: [pthread_t] = []
        for _ in 0..<16 {
            var thread = pthread_t()
            pthread_create(&thread, nil, { raw in
                let flag = UnsafeMutablePointer<Bool>(bitPattern: UInt(bitPattern: raw))
                while flag?.pointee == false {
                    let block = malloc(4096)
                    free(block)
                }
                return nil
            }, UnsafeMutableRawPointer(bitPattern: address))
            threads.append(thread)
        }
        for index in 0..<50 {
            let result = try await runToEnd(try busyboxSpec(["/bin/echo", "\(index)"]))
            #expect(result.stdout == "\(index)\n")
        }
        stop.pointee = true
        for thread in threads { pthread_join(thread, nil) }
    }
}
