import ContainerKernel
import Glibc
import SystemSupport

/// Sessions: what one process makes on a root, labelled with that process (its pid and start
/// time, so that a later process with the same pid is not taken for it), and swept once the
/// process is gone, also when it was killed with SIGKILL and cleaned nothing up itself.
extension ContainerRuntime {
    /// The label that ties a container to a session: its value is the session
    /// (``currentSession``) of the process that created it.
    ///
    /// A container with this label does not outlive its session: once that process has ended,
    /// the next sweep (``pruneSessions()``, run whenever a runtime opens the root) removes the
    /// container whatever its state, where an unlabelled created or exited container is
    /// adopted by the next runtime. `ContainerTesting` labels every fixture it starts.
    public static let sessionLabel = "berth.session"

    /// This process's session, `<pid>-<start time>`: the value of ``sessionLabel`` and the name
    /// of ``sessionDirectory``.
    public static let currentSession = "\(getpid())-\(processStartTime(getpid()) ?? 0)"

    /// Whether the process a session names still runs (the same process, not a later one with
    /// its pid).
    static func isSessionAlive(_ session: String) -> Bool {
        let parts = session.split(separator: "-")
        guard parts.count == 2, let pid = Int32(parts[0]), let startTime = UInt64(parts[1]) else { return false }
        return isAlive(pid, startTime)
    }

    var sessionsDirectory: String { root + "/sessions" }

    /// The directory below the root for this process's session files,
    /// `<root>/sessions/<session>`: what a session keeps beside its containers, such as the
    /// filesystem snapshots of `ContainerTesting`'s fixtures. It is not created here: create
    /// it, and what you put in it, when you first need it.
    ///
    /// Remove what you no longer need yourself; whatever is left is removed by the first sweep
    /// (``pruneSessions()``) after this process has ended.
    public var sessionDirectory: String { sessionsDirectory + "/" + Self.currentSession }

    /// Removes what processes that have ended left on the root: the containers, mounts,
    /// cgroups, network sandboxes (veths, address leases, network namespaces) and state of
    /// their embedded containers that were running when they ended, every container labelled
    /// with an ended session (``sessionLabel``), their session directories
    /// (``sessionDirectory``) and half-made volume copies.
    ///
    /// Opening a runtime runs this once (``removedAtOpen`` tells what it removed); call it again
    /// to sweep sessions that ended since, as `berth system prune --sessions` does. Detached
    /// containers, and created or exited containers of no session, are kept: they belong to
    /// the root, not to a process.
    ///
    /// - Returns: What was removed, one line each (`container <id>`, `network sandbox <id>`,
    ///   `session directory <session>`, `volume copy <name>`).
    @discardableResult
    public func pruneSessions() -> [String] {
        let containers = refresh(removingLeftovers: true)
        // Sandboxes (veths, leases, namespaces) of containers that are gone.
        let sandboxes = (try? networks.cleanupStale { [containersDirectory] id in access(containersDirectory + "/" + id, F_OK) == 0 }) ?? []
        var sessions: [String] = []
        for entry in (try? directoryEntries(atPath: sessionsDirectory)) ?? [] where !Self.isSessionAlive(entry.name) {
            if (try? removeTree(sessionsDirectory + "/" + entry.name)) != nil { sessions.append(entry.name) }
        }
        return containers.map { "container \($0)" } + sandboxes.map { "network sandbox \($0)" }
            + sessions.map { "session directory \($0)" } + removeVolumeLeftovers().map { "volume copy \($0)" }
    }
}
