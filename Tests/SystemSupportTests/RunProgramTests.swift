// The one runner of helper programs (Docker's credential helpers, `busybox --list`).

import Glibc
@testable import SystemSupport
import Testing
import TestSupport

@Suite(.serialized)
struct RunProgramTests {
    /// The input reaches the program, its output and exit status come back.
    @Test func inputOutputAndStatus() throws {
        let echoed = try runProgramToEnd(["/bin/sh", "-c", "read line; echo \"got $line\"; exit 3"], input: Array("hello\n".utf8))
        #expect(echoed.status == 3)
        #expect(String(decoding: echoed.output, as: UTF8.self) == "got hello\n")
        let killed = try runProgramToEnd(["/bin/sh", "-c", "kill -9 $$"])
        #expect(killed.status == 128 + SIGKILL)
        let cut = try runProgramToEnd(["/bin/sh", "-c", "head -c 100000 /dev/zero"], outputLimit: 10)
        #expect(cut.output.count == 10)
    }

    /// A program that is not on PATH is an error naming it, not a status.
    @Test func aMissingProgramIsAnError() {
        do throws(SystemError) {
            _ = try runProgramToEnd(["berth-no-such-program"])
            Issue.record("a missing program ran")
        } catch {
            #expect(error.is(.noSuchFileOrDirectory) && "\(error)".contains("berth-no-such-program"), "\(error)")
        }
    }

    /// A program that exits without reading its input does not end the caller with SIGPIPE.
    @Test func aProgramThatReadsNothingDoesNotKillTheCaller() throws {
        let result = try runProgramToEnd(["/bin/true"], input: [UInt8](repeating: 0x61, count: 1 << 20))
        #expect(result.status == 0)
    }
}
