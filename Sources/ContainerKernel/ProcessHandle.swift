import CContainerKernel
import Glibc
import Synchronization

/// A spawned process, owned through a pidfd: waiting and signalling never race with pid reuse.
///
/// The process is reaped by Berth's I/O thread as soon as it exits; its cgroup (if any) is
/// removed before ``wait()`` returns, so a caller that waited has nothing left to clean up.
///
/// ```swift
/// let process = try await ProcessHandle.spawn(spec)
/// try process.signal(.terminate)
/// let status = await process.wait()   // .signaled(SIGTERM, coreDumped: false)
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

    private let pidfd: Int32
    private let state = Mutex<(status: ExitStatus?, waiters: [CheckedContinuation<ExitStatus, Never>])>((nil, []))

    init(
        pid: Int32, pidfd: Int32, cgroup: Cgroup?, standardInput: ProcessInput?, standardOutput: ProcessOutput?,
        standardError: ProcessOutput?, terminal: Terminal?
    ) {
        self.pid = pid
        self.pidfd = pidfd
        self.cgroup = cgroup
        self.standardInput = standardInput
        self.standardOutput = standardOutput
        self.standardError = standardError
        self.terminal = terminal
    }

    deinit { close(pidfd) }

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
        _ = try sys("send \(signal) to process \(pid)") { ck_pidfd_send_signal(pidfd, signal.rawValue) }
    }

    /// How the process ended, or `nil` while it runs.
    public var exitStatus: ExitStatus? { state.withLock { $0.status } }

    /// Waits until the process has exited and everything spawned for it is cleaned up.
    ///
    /// - Returns: How the process ended.
    public func wait() async -> ExitStatus {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> ExitStatus? in
                if let status = state.status { return status }
                state.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Starts watching the pidfd on the I/O loop; the loop keeps `self` alive until the exit.
    func watchExit() throws(KernelError) {
        let registration = Mutex<(token: UInt64?, reaped: Bool)>((nil, false))
        let token = try IOLoop.shared.register(pidfd, events: UInt32(EPOLLIN.rawValue)) { [self] _ in
            var code: Int32 = 0, status: Int32 = 0
            // WNOHANG: a spurious wake-up must not block the loop.
            guard ck_waitid_pidfd(pidfd, WEXITED | WNOHANG, &code, &status) > 0 else { return }
            let token = registration.withLock { state in
                state.reaped = true
                return state.token
            }
            if let token { IOLoop.shared.unregister(pidfd, token: token) }
            // Cleanup may wait for the cgroup to empty: not on the loop thread.
            Task.detached { self.finish(code: code, status: status) }
        }
        // The exit may have been handled before the token was stored: unregister here then.
        let reaped = registration.withLock { state in
            state.token = token
            return state.reaped
        }
        if reaped { IOLoop.shared.unregister(pidfd, token: token) }
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
        let waiters = state.withLock { state in
            state.status = exit
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        waiters.forEach { $0.resume(returning: exit) }
    }
}
