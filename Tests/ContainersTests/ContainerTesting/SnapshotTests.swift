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
    /// A stateful service: it records each boot in its root filesystem, a moment after it
    /// starts, and says it is ready then; then it serves until stopped.
    func statefulService(volume: String) -> Fixture {
        var fixture = Fixture(image: "busybox", command: ["/bin/sh", "-c", "mkdir -p /state; sleep 0.2; echo boot >> /state/boots; echo ready; exec sleep 600"],
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
            // Restored to one boot, then booted again; the wait saw the new run's "ready", not
            // the old run's, still in the log.
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

    /// A write-only sysfs attribute (4096 bytes by stat, EACCES on open even for root): a file
    /// no copy can read, bound over a saved file to make a restore fail half-way for real.
    static let unreadableFile: String? = ["/sys/bus/pci/rescan", "/sys/bus/cpu/drivers_probe"].first { path in
        let fd = open(path, O_RDONLY)
        if fd >= 0 { close(fd) }
        return fd < 0 && errno == EACCES
    }

    @Test(.enabled(if: unreadableFile != nil, "no write-only sysfs file to bind over a saved file"))
    func aRestoreThatFailsHalfWayLeavesTheFixtureAsItWasAndNoCopyBehind() async throws {
        let runtime = try await TestRuntime.shared()
        let volume = "snapshot-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        _ = try runtime.createVolume(name: volume)
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers", runtime.root + "/sessions"])
        try await withFixture(statefulService(volume: volume), in: runtime) { service in
            _ = try await shell(service, "echo one > /state/a; echo one > /state/z; echo kept > /data/v")
            let saved = try await service.snapshot()
            _ = try await shell(service, "echo two > /state/a; echo new > /state/b; rm /data/v; echo new > /data/w")

            // The volume is copied first, then the root filesystem, whose last file cannot be read.
            let bound = saved.directory + "/rootfs/state/z"
            let unreadable = try #require(Self.unreadableFile)
            #expect(FileManager.default.fileExists(atPath: bound), "the saved copy holds the file to bind over")
            #expect(try runProgram(["mount", "--bind", unreadable, bound]).status == 0)
            do {
                await #expect { try await service.restore(saved) } throws: { error in
                    (error as? ContainerError)?.code == .layer
                }
            }
            #expect(try runProgram(["umount", bound]).status == 0)

            // Stopped by the restore, its files as they were before it (its root filesystem still
            // mounted), no copy left behind.
            let root = service.container.directory + "/rootfs"
            #expect(try String(contentsOfFile: root + "/state/a", encoding: .utf8) == "two\n")
            #expect(try String(contentsOfFile: root + "/state/b", encoding: .utf8) == "new\n")
            let data = runtime.root + "/volumes/\(volume)"
            #expect(try FileManager.default.contentsOfDirectory(atPath: data + "/_data") == ["w"])
            #expect(!FileManager.default.fileExists(atPath: data + "/restoring"))
            #expect(!FileManager.default.fileExists(atPath: service.container.directory + "/restoring"))

            // The snapshot itself is intact: restored now, it gives its state.
            try await service.restore(saved)
            #expect(try await shell(service, "cat /state/a /data/v; ls /state; ls /data") == "one\nkept\na\nboots\nz\nv\n")
        }
        try runtime.removeVolume(volume)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// The acceptance row: a PostgreSQL table, a snapshot, 10,000 rows inserted with psql, a
    /// restore: the table is there and the rows are gone. The server restarts from a data
    /// directory frozen mid-run (it replays its WAL), ready by the module's own wait.
    @Test func postgresRestoreDropsTheRowsInsertedAfterTheSnapshot() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers", runtime.root + "/sessions"])
        try await withTestNetwork(runtime) { network in
            let postgres = PostgresFixture(network: .bridge([network]))
            try await withFixture(postgres, in: runtime) { db in
                _ = try psql(try postgres.connectionURL(of: db), "create table t (n int primary key, label text)")
                let empty = try await db.snapshot()
                _ = try psql(try postgres.connectionURL(of: db),
                             "insert into t select n, 'row ' || n from generate_series(1, 10000) n")
                #expect(try psql(try postgres.connectionURL(of: db), "select count(*) from t") == "10000")

                try await db.restore(empty)
                let url = try postgres.connectionURL(of: db)  // a new host port after the restart
                #expect(try psql(url, "select count(*) from t") == "0")
                #expect(try psql(url, "select string_agg(column_name, ',' order by ordinal_position) from information_schema.columns where table_name = 't'")
                        == "n,label")
                // Writable after the recovery, and restorable again.
                _ = try psql(url, "insert into t values (1, 'one')")
                try await db.restore(empty)
                #expect(try psql(try postgres.connectionURL(of: db), "select count(*) from t") == "0")
            }
        }
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
