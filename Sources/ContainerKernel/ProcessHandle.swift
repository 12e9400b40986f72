import CSyscalls
import Glibc
import Synchronization
import SystemSupport

/// A spawned process, owned through a pidfd: waiting and signalling never race with pid reuse.
///
/// The process is reaped by Berth's I/O thread as soon as it exits; its cgroup (if any) is
/// removed before ``wait(timeout:)`` returns, so a caller that waited has nothing left to clean up.
///
/// ```swift
/// let process = try await ProcessHandle.spawn(spec)
/// try process.signal(.terminate)
/// let status = try await process.wait()   // .signaled(SIGTERM, coreDumped: false)
/// ```
public final class ProcessHandle: Sendable {
    /// The process id in the caller's pid namespace.
    public let pid: Int32
    /// The cgroup the process runs in, if its spec asked for one.
    public let cgroup: Cgroup?
    /// The write end of stdin, when the spec asked for a pipe.
    public let standardInput: ProcessInput?
    /// Stdout, when the spec asked for a pipe.
    public let standardOutput: ProcessOutput?
    /// Stderr, when the spec asked for a pipe.
    public let standardError: ProcessOutput?
    /// The terminal, when the spec asked for one.
    public let terminal: Terminal?

    /// The supervisor of a detached process (``ProcessSpec/supervision``).
    struct Supervisor: Sendable {
        var pid: Int32
        var pidfd: Int32
        var statusPath: String
    }

    /// The process's pidfd; `-1` for an adopted process that had already exited.
    private let pidfd: Int32
    private let supervisor: Supervisor?
    /// For a process another program holds (``observe(pid:parentPID:cgroup:exitStatus:)``):
    /// how to learn its exit status from that program once it has ended.
    private let observedExit: (@Sendable () async -> ExitStatus)?
    private let exit = Outcome<ExitStatus>()

    init(
        pid: Int32, pidfd: Int32, supervisor: Supervisor? = nil, observedExit: (@Sendable () async -> ExitStatus)? = nil,
        cgroup: Cgroup?, standardInput: ProcessInput? = nil, standardOutput: ProcessOutput? = nil,
        standardError: ProcessOutput? = nil, terminal: Terminal? = nil
    ) {
        self.pid = pid
        self.pidfd = pidfd
        self.supervisor = supervisor
        self.observedExit = observedExit
        self.cgroup = cgroup
        self.standardInput = standardInput
        self.standardOutput = standardOutput
        self.standardError = standardError
        self.terminal = terminal
    }

    deinit {
        if pidfd >= 0 { close(pidfd) }
        if let supervisor, supervisor.pidfd >= 0 { close(supervisor.pidfd) }
    }

    /// The supervisor's process id, for a detached process.
    public var supervisorPID: Int32? { supervisor?.pid }

    /// Takes hold of a detached process that another program spawned, through its supervisor.
    ///
    /// The supervisor is identified by its pid and start time (so a reused pid is never taken
    /// for it), the process by being the supervisor's child. ``wait(timeout:)`` returns when the
    /// supervisor has recorded the exit (at once when it already has); ``signal(_:)`` signals
    /// the process.
    ///
    /// - Parameters:
    ///   - pid: The supervised process.
    ///   - supervisorPID: Its supervisor.
    ///   - supervisorStartTime: The supervisor's start time (field 22 of `/proc/<pid>/stat`).
    ///   - statusPath: The supervision's ``Supervision/statusPath``.
    ///   - cgroup: The process's cgroup, removed when it has exited.
    /// - Returns: The process; an exited one when the supervisor is no longer running.
    public static func adopt(
        pid: Int32, supervisorPID: Int32, supervisorStartTime: UInt64, statusPath: String, cgroup: Cgroup?
    ) -> ProcessHandle {
        // Open first, check after: the check then speaks of the process the pidfd holds.
        var supervisorFD = ck_pidfd_open(supervisorPID)
        if supervisorFD >= 0 && processStartTime(supervisorPID) != supervisorStartTime {
            close(supervisorFD)
            supervisorFD = -1
        }
        var processFD = supervisorFD >= 0 ? ck_pidfd_open(pid) : -1
        if processFD >= 0 && parentProcess(of: pid) != supervisorPID {
            close(processFD)
            processFD = -1  // it has exited and the pid is someone else's
        }
        let handle = ProcessHandle(
            pid: pid, pidfd: processFD,
            supervisor: Supervisor(pid: supervisorPID, pidfd: supervisorFD, statusPath: statusPath), cgroup: cgroup)
        if supervisorFD < 0 || (try? handle.watchExit()) == nil {
            let (code, status) = handle.supervisedExit(statusPath)
            Task.detached { handle.finish(code: code, status: status) }
        }
        return handle
    }

    /// Takes hold of a process that another program spawned and still holds as its child, to
    /// signal it and to learn when it ends. That program reaps it and cleans up after it; this
    /// handle's ``wait(timeout:)`` returns what `exitStatus` reports once the process has exited.
    ///
    /// - Parameters:
    ///   - pid: The process.
    ///   - parentPID: The program that holds it: a pid whose child is not `pid` is refused.
    ///   - cgroup: The process's cgroup, for the caller's use (this handle never removes it).
    ///   - exitStatus: Asks the holding program how the process ended; called once, after the exit.
    /// - Returns: The process, or `nil` when it is no longer `parentPID`'s child.
    public static func observe(
        pid: Int32, parentPID: Int32, cgroup: Cgroup?, exitStatus: @escaping @Sendable () async -> ExitStatus
    ) -> ProcessHandle? {
        // Open first, check after: the check then speaks of the process the pidfd holds.
        let fd = ck_pidfd_open(pid)
        guard fd >= 0 else { return nil }
        guard parentProcess(of: pid) == parentPID else {
            close(fd)
            return nil
        }
        let handle = ProcessHandle(pid: pid, pidfd: fd, observedExit: exitStatus, cgroup: cgroup)
        return (try? handle.watchExit()) != nil ? handle : nil
    }

    /// How a supervised process ended, as its supervisor recorded it.
    private func supervisedExit(_ statusPath: String) -> (code: Int32, status: Int32) {
        if let recorded = Supervision.readStatus(at: statusPath) { return recorded }
        // The supervisor was killed: the process died with it (its parent-death signal).
        if pidfd >= 0 { _ = ck_pidfd_send_signal(pidfd, SIGKILL) }
        return (Int32(CLD_KILLED), SIGKILL)
    }

    /// Spawns a process as `spec` describes and returns once it has called `execve`.
    ///
    /// The cost is one `clone3`, the init sequence in the child and `execve`; the seccomp
    /// profile is compiled once per distinct profile and cached.
    ///
    /// - Parameter spec: What to run and how to isolate it.
    /// - Returns: The running process.
    /// - Throws: ``KernelError``: ``KernelError/Code/initFailed`` with the failing ``InitStage``
    ///   when the child's init sequence failed (`exec "/bin/nope": no such file or directory`),
    ///   other codes for failures in the host. Nothing is left behind on failure.
    public static func spawn(_ spec: ProcessSpec) async throws(KernelError) -> ProcessHandle {
        try await Spawner.shared.spawn(spec)
    }

    /// Sends a signal to the process.
    ///
    /// - Parameter signal: The signal.
    /// - Throws: ``KernelError`` (`ESRCH` once the process has exited and been reaped).
    public func signal(_ signal: Signal) throws(KernelError) {
        guard pidfd >= 0 else {
            throw KernelError(code: .syscallFailed, errno: .noSuchProcess, detail: "send \(signal) to process \(pid)")
        }
        _ = try KernelError.from(try sys("send \(signal) to process \(pid)") { ck_pidfd_send_signal(pidfd, signal.rawValue) })
    }

    /// How the process ended, or `nil` while it runs.
    public var exitStatus: ExitStatus? { exit.value }

    /// This process's `PR_GET_DUMPABLE` setting, which spawning must leave as it found it.
    package static var callerDumpable: Int32 { ck_get_dumpable() }

    /// Whether the process has not been reaped yet, so that its pid still names it: what was
    /// opened below `/proc/<pid>` before this answered `true` belongs to this process.
    var isAlive: Bool { pidfd >= 0 && ck_pidfd_send_signal(pidfd, 0) == 0 }

    /// Waits until the process has exited and everything spawned for it is cleaned up.
    ///
    /// Waiting costs nothing while it lasts: the exit arrives through the process's pidfd on
    /// Berth's I/O thread, and the calling task is suspended, never blocking a thread.
    /// Giving up (the deadline, or cancellation of the calling task) leaves the process
    /// running: kill it with ``signal(_:)`` and wait again to leave nothing behind.
    ///
    /// - Parameter timeout: How long to wait at most; `nil` waits as long as the process runs.
    /// - Returns: How the process ended.
    /// - Throws: ``KernelError``: ``KernelError/Code/timedOut`` when `timeout` passed first,
    ///   ``KernelError/Code/cancelled`` when the calling task was cancelled first.
    public func wait(timeout: Duration? = nil) async throws(KernelError) -> ExitStatus {
        switch await exit.wait(timeout: timeout) {
        case .success(let status): return status
        case .failure(.deadline):
            throw KernelError(code: .timedOut, detail: "wait for process \(pid): still running after \(timeout ?? .zero)")
        case .failure(.cancelled):
            throw KernelError(code: .cancelled, detail: "wait for process \(pid)")
        }
    }

    /// Waits for the exit, whatever happens to the calling task: for the owner of the process,
    /// which must see its end to release what goes with it.
    package func exited() async -> ExitStatus { await exit.uncancellableValue() }

    /// Starts watching the pidfd on the I/O loop; the loop keeps `self` alive until the exit.
    ///
    /// A detached process is watched through its supervisor, which exits once it has reaped
    /// the process and recorded its status (after the process's output has ended).
    func watchExit() throws(KernelError) {
        let registration = Mutex<(token: UInt64?, reaped: Bool)>((nil, false))
        let watched = supervisor?.pidfd ?? pidfd
        let token = try IOLoop.shared.register(watched, events: UInt32(EPOLLIN.rawValue)) { [self] _ in
            var code: Int32 = 0, status: Int32 = 0
            // WNOHANG: a spurious wake-up must not block the loop.
            let reaped = ck_waitid_pidfd(watched, WEXITED | WNOHANG, &code, &status)
            if supervisor != nil || observedExit != nil {
                // Our own child is reaped here; another program's child (ECHILD) has exited
                // when its pidfd reads ready.
                guard reaped > 0 || (reaped < 0 && errno == ECHILD) else { return }
                if let supervisor { (code, status) = supervisedExit(supervisor.statusPath) }
            } else {
                guard reaped > 0 else { return }
            }
            let token = registration.withLock { state in
                state.reaped = true
                return state.token
            }
            if let token { IOLoop.shared.unregister(watched, token: token) }
            // Cleanup may wait for the cgroup to empty: not on the loop thread.
            if let observedExit {
                Task.detached { self.complete(await observedExit()) }
            } else {
                Task.detached { self.finish(code: code, status: status) }
            }
        }
        // The exit may have been handled before the token was stored: unregister here then.
        let reaped = registration.withLock { state in
            state.token = token
            return state.reaped
        }
        if reaped { IOLoop.shared.unregister(watched, token: token) }
    }

    private func finish(code: Int32, status: Int32) {
        var exit: ExitStatus
        switch code {
        case Int32(CLD_EXITED): exit = .exited(status)
        default: exit = .signaled(Signal(rawValue: status), coreDumped: code == Int32(CLD_DUMPED))
        }
        if let cgroup {
            if exit == .signaled(.kill, coreDumped: false), let stats = try? cgroup.stats(), (stats.oomKills ?? 0) > 0 {
                exit = .oomKilled
            }
            // With a pid namespace the kernel has killed the rest; without one, do it here.
            try? cgroup.killAll()
            try? cgroup.destroy()
        }
        complete(exit)
    }

    private func complete(_ status: ExitStatus) { exit.fulfil(status) }
}
