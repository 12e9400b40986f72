import Containers
import ContainerTesting
import Foundation
import Glibc
import Testing
import TestSupport

/// A fixture's filesystem state saved while it runs and put back later: the root filesystem's
/// changes (new, changed and deleted files) and its named volumes.
@Suite(.serialized)
struct SnapshotTests {
    /// A stateful service: it records each boot in its root filesystem, then serves until stopped.
    func statefulService(volume: String) -> Fixture {
        var fixture = Fixture(image: "busybox", command: ["/bin/sh", "-c", "mkdir -p /state; echo boot >> /state/boots; echo ready; exec sleep 600"],
                              waitingFor: .logLine(matching: "ready"), startupTimeout: .seconds(30))
        fixture.configuration.mounts = [.volume(name: volume, target: "/data", readOnly: false)]
        fixture.configuration.stopSignal = "KILL"
        return fixture
    }

    func shell(_ fixture: RunningFixture, _ script: String) async throws -> String {
        let result = try await fixture.container.exec(["/bin/sh", "-c", script])
        #expect(result.status == .exited(0), "\(script): \(result.standardError)")
        return result.standardOutput
    }

    @Test func restoreUndoesNewChangedAndDeletedFilesAndVolumeDataAndRestartsTheService() async throws {
        let runtime = try await TestRuntime.shared()
        let volume = "snapshot-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        _ = try runtime.createVolume(name: volume)
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers", runtime.root + "/sessions"])
        try await withFixture(statefulService(volume: volume), in: runtime) { service in
            // A deleted image file is a whiteout in the saved changes: it must stay deleted.
            _ = try await shell(service, "echo one > /state/a; echo kept > /data/v; rm /etc/group")
            let saved = try await service.snapshot()
            #expect(service.container.state.status == .running, "the snapshot thaws the container")

            _ = try await shell(service, "echo two > /state/a; echo new > /state/b; echo back > /etc/group; rm /data/v; echo new > /data/w")
            try await service.restore(saved)
            #expect(try await shell(service, "cat /state/a /data/v; ls /state; ls /data; test -e /etc/group || echo no group")
                    == "one\nkept\na\nboots\nv\nno group\n")
            // Restored to one boot, then booted again.
            #expect(try await shell(service, "cat /state/boots") == "boot\nboot\n")

            // The snapshot is kept: restored twice, it gives the same state again.
            _ = try await shell(service, "echo three > /state/a")
            try await service.restore(saved)
            #expect(try await shell(service, "cat /state/a") == "one\n")
            #expect(throws: FixtureError.self) { try service.mappedPort(1) }
        }
        try runtime.removeVolume(volume)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test func aSnapshotOfAnotherFixtureIsRefused() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers", runtime.root + "/sessions"])
        try await withFixtures([sleeper("snapshot-a"), sleeper("snapshot-b")], in: runtime) { fixtures in
            let saved = try await fixtures[0].snapshot()
            await #expect { try await fixtures[1].restore(saved) } throws: { error in
                (error as? FixtureError)?.code == .foreignSnapshot
            }
            try saved.remove()
            #expect(!FileManager.default.fileExists(atPath: saved.directory))
        }
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }
}
