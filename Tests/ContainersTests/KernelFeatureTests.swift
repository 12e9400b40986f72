import Containers
import ContainerKernel
import Foundation
import Testing
import TestSupport

/// Kernels back to 5.12, and processes under a seccomp filter (Docker's default profile answers
/// ENOSYS to clone3): each system call Berth relies on is taken away in turn, as such a kernel
/// or filter would, from the `berth` CLI. The start either works without it, or fails with an
/// error naming the call and the Linux release that has it, and leaves nothing behind.
@Suite(.serialized)
struct KernelFeatureTests {
    /// System call numbers: the same everywhere from 424 on, per architecture below that.
    static func number(_ feature: KernelFeature) -> Int {
        switch feature {
        case .pidfdSendSignal: 424
        case .fsopen: 430
        case .pidfdOpen: 434
        case .clone3: 435
        case .closeRange: 436
        case .openat2: 437
        case .mountSetattr: 442
        #if arch(x86_64)
        case .memfdCreate: 319
        case .execveat: 322
        #else
        case .memfdCreate: 279
        case .execveat: 281
        #endif
        }
    }

    /// What a start without the feature does.
    enum Start: Sendable { case works, refused }

    static let rows: [(KernelFeature, detached: Bool, Start)] = [
        (.clone3, false, .refused), (.openat2, false, .refused), (.closeRange, false, .refused),
        (.pidfdOpen, false, .refused), (.pidfdSendSignal, false, .refused), (.mountSetattr, false, .refused),
        // overlay falls back to its classic options; programs are exec'd directly.
        (.fsopen, false, .works), (.execveat, false, .works), (.memfdCreate, false, .works),
        // the supervisor of a detached container runs from a sealed memfd.
        (.execveat, true, .refused), (.memfdCreate, true, .refused),
    ]

    @Test(arguments: rows)
    func withoutAFeatureAStartWorksOrNamesIt(_ feature: KernelFeature, detached: Bool, start: Start) async throws {
        #expect(feature.isAvailable, "this machine itself lacks \(feature)")
        let runtime = try await TestRuntime.shared()
        _ = try await CLITests().berth(["ps"])
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let probe = try TestRootfs.busybox() + TestRootfs.probe
        let name = "without-\(feature)-\(getpid())"
        let outcome = try await CLITests().berth(
            ["run", detached ? "-d" : "--rm", "--name", name, "busybox", "echo", "started"],
            wrapper: [probe, "enosys", "\(Self.number(feature))"])
        switch start {
        case .works:
            #expect(outcome.status == 0, "\(outcome.error)")
            #expect(outcome.output == "started\n")
        case .refused:
            #expect(outcome.status != 0)
            #expect(outcome.error.contains("\(feature) (Linux \(feature.minimumLinux))"), "\(outcome.error)")
            #expect(!runtime.list(all: true).contains { $0.name == name })
        }
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }
}
