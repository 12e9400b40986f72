import ContainerKernel
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
