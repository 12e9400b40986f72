public import Containers
import FoundationEssentials
import Glibc
import SystemSupport

/// A fixture's filesystem state at one moment, made by ``RunningFixture/snapshot()`` and put
/// back by ``RunningFixture/restore(_:)``.
///
/// Its copy lives in the test session's directory (`ContainerRuntime.sessionDirectory`):
/// it goes with ``remove()``, with the fixture's ``RunningFixture/remove()``, and, should the
/// test process be killed, with the next session's sweep.
public struct FixtureSnapshot: Sendable, Hashable {
    /// The directory that holds the copy.
    public let directory: String
    /// The id of the container it was taken of.
    public let containerID: String

    /// Deletes the copy; the snapshot cannot be restored after this.
    ///
    /// - Throws: `ContainerError` when deleting fails.
    public func remove() throws(ContainerError) {
        try ContainerError.from(try removeTree(directory))
    }
}

extension RunningFixture {
    /// Saves the fixture's filesystem state: what its container wrote to its root filesystem
    /// and to its named volumes, copied while the container is frozen (the cgroup freezer),
    /// which then runs on.
    ///
    /// ```swift
    /// let empty = try await database.snapshot()
    /// // … the test writes rows …
    /// try await database.restore(empty)   // the rows are gone
    /// ```
    ///
    /// Costs a copy of every file the container changed (a reflink on Btrfs and XFS).
    ///
    /// - Returns: The snapshot, for ``restore(_:)``.
    /// - Throws: `ContainerError` when the copy cannot be made.
    public func snapshot() async throws(ContainerError) -> FixtureSnapshot {
        let directory = snapshotsDirectory + "/" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let snapshot = FixtureSnapshot(directory: directory, containerID: container.id)
        do {
            try await container.saveFilesystem(to: directory)
        } catch {
            try? snapshot.remove()
            throw error
        }
        return snapshot
    }

    /// Puts back the filesystem state of `snapshot`: kills the container (its stop signal,
    /// then `SIGKILL` with no grace period: what it would write on its way out is thrown
    /// away), restores its root filesystem and named volumes, starts it again and waits until
    /// the fixture's wait strategy says it is ready, within its startup timeout; a log-line
    /// wait counts the new run's lines only.
    ///
    /// The snapshot was taken of running processes, so the restarted service finds its files
    /// as a crash would have left them: a database recovers from its journal (PostgreSQL
    /// replays its WAL) rather than being initialised again. The restore is all or nothing:
    /// when it fails, the fixture's files are as they were before it.
    ///
    /// The snapshot is kept and can be restored again. The container gets a new process, and
    /// its published ports new host ports: ask ``mappedPort(_:transport:)`` again.
    ///
    /// - Parameter snapshot: A snapshot of this fixture.
    /// - Throws: ``FixtureError`` when it is not ready in time (``FixtureError/Code/foreignSnapshot``
    ///   for a snapshot of another fixture); `ContainerError` when it cannot be stopped,
    ///   restored or started.
    public func restore(_ snapshot: FixtureSnapshot) async throws {
        guard snapshot.containerID == container.id else {
            throw FixtureError(code: .foreignSnapshot, container: container.name,
                               detail: "the snapshot at \(snapshot.directory) is of container \(snapshot.containerID)",
                               state: container.state)
        }
        let deadline = ContinuousClock.now.advanced(by: fixture.startupTimeout)
        // Killed at once: whatever it would write on its way out is thrown away with the rest.
        if [.running, .paused].contains(container.state.status) { _ = try await container.stop(timeout: .zero) }
        try await container.restoreFilesystem(from: snapshot.directory)
        // The log keeps the lines of the run before: a log-line wait counts the new run's only.
        let restarted = Date.now
        try await container.start()
        try await fixture.waitStrategy.wait(for: container, until: deadline, logsSince: restarted)
    }

    /// The directory of this fixture's snapshots, in the session's directory.
    var snapshotsDirectory: String { container.runtime.sessionDirectory + "/snapshots/" + container.id }

    /// Deletes this fixture's snapshots, and the session's directory when nothing else is left
    /// in it.
    func removeSnapshots() {
        try? removeTree(snapshotsDirectory)
        _ = rmdir(container.runtime.sessionDirectory + "/snapshots")  // fails, harmlessly, while other fixtures have some
        _ = rmdir(container.runtime.sessionDirectory)
    }
}
