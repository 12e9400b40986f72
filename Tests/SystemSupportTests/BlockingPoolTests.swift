// The one pool for blocking work: bounded, so a burst of blocking calls never becomes a burst of
// threads.

import Glibc
import Synchronization
@testable import SystemSupport
import Testing

@Suite
struct BlockingPoolTests {
    @Test func noMoreCallsRunAtOnceThanTheWidth() async throws {
        let pool = BlockingPool(width: 3, name: "berth-test-pool")
        let counts = Counts()
        try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<12 {
                group.addTask {
                    try await pool.run { () throws(SystemError) -> Int in
                        counts.state.withLock { $0.running += 1; $0.peak = max($0.peak, $0.running) }
                        usleep(30_000)  // a blocking call
                        counts.state.withLock { $0.running -= 1 }
                        return index
                    }
                }
            }
            var seen = Set<Int>()
            for try await index in group { seen.insert(index) }
            #expect(seen == Set(0..<12))
        }
        #expect(counts.state.withLock { $0.peak } == 3)
    }

    @Test func aThrowingCallResumesTheCallerWithItsError() async throws {
        let pool = BlockingPool(width: 1, name: "berth-test-pool")
        do {
            _ = try await pool.run { () throws(SystemError) -> Int in throw SystemError(errno: .ioError, detail: "read x") }
            Issue.record("no error")
        } catch {
            #expect(error.errno == .ioError && error.detail == "read x")
        }
        #expect(try await pool.run { () throws(SystemError) in 7 } == 7)
    }
}

private final class Counts: Sendable {
    let state = Mutex<(running: Int, peak: Int)>((0, 0))
}
