import CChildPath
import CSyscalls
import Glibc
import Synchronization
import SystemPackage
import SystemSupport

/// Runs every spawn on one long-lived thread.
///
/// The parent-death signal (`PR_SET_PDEATHSIG`) fires when the *thread* that created the child
/// exits, not the process: a cooperative-pool thread may be retired at any time, so clones
/// happen here, on a thread that lives as long as the process.
final class Spawner: Sendable {
    static let shared = Spawner()

    private let wakeup: Int32
    private let jobs = Mutex<[@Sendable () -> Void]>([])

    /// Detected once: reading mountinfo on every start would cost more than the clone.
    private static let machineHierarchy = Result { () throws(KernelError) in try CgroupHierarchy.detect() }

    private init() {
        wakeup = eventfd(0, Int32(EFD_CLOEXEC))
        precondition(wakeup >= 0, "eventfd failed: the process is out of file descriptors")
        DedicatedThread(name: "berth-spawn") { [self] in
            // A child shares this thread's errno until it execs (see ck_spawn.c): with every
            // signal blocked no call here is interrupted, so none reads a value the child left.
            var all = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_SETMASK, &all, nil)
            var counter: UInt64 = 0
            while true {
                _ = read(wakeup, &counter, 8)
                let batch = jobs.withLock { queue in
                    defer { queue.removeAll() }
                    return queue
                }
                batch.forEach { $0() }
            }
        }.start()
    }

    func spawn(_ spec: ProcessSpec) async throws(KernelError) -> ProcessHandle {
        // A missing system call is named here, not met as ENOSYS halfway through the clone.
        try KernelFeature.require(KernelFeature.forSpawn + (spec.rootfs == nil ? [] : [.mountSetattr]),
                                  to: "starting a process")
        // Everything that can be done off the spawner thread is: compiling seccomp, creating
        // the cgroup, building the flat config.
        let seccomp = try program(for: spec)
        let cgroup = try spec.cgroup.map { placement throws(KernelError) in
            let hierarchy = placement.hierarchy.map { .success($0) } ?? Self.machineHierarchy
            return try Cgroup.create(placement.path, resources: placement.resources, in: hierarchy.get())
        }
        let plan: SpawnPlan
        do {
            plan = try SpawnPlan(spec, seccomp: seccomp)
        } catch {
            try? cgroup?.destroy()
            throw error
        }
        let box = SendablePlan(plan)
        let result: Result<ProcessHandle, KernelError> = await withCheckedContinuation { continuation in
            let job: @Sendable () -> Void = {
                continuation.resume(returning: Result { () throws(KernelError) in
                    try Self.run(plan: box, spec: spec, cgroup: cgroup)
                })
            }
            jobs.withLock { $0.append(job) }
            var one: UInt64 = 1
            _ = write(wakeup, &one, 8)
        }
        return try result.get()
    }

    private func program(for spec: ProcessSpec) throws(KernelError) -> SeccompProgram? {
        let profile: SeccompProfile
        switch spec.seccomp {
        case .unconfined: return nil
        case .program(let program): return program
        case .profile(let given): profile = given
        case .dockerDefault: profile = .dockerDefault(capabilities: spec.capabilities.effective)
        }
        return try SeccompCache.program(for: profile)
    }

    /// Children that missed their init deadline and did not die from SIGKILL at once (stuck in
    /// an uninterruptible sleep, say on a hung bind source): reaped, and their spawn's stack and
    /// status page freed, by a later spawn once they have exited. Until then a direct child
    /// still shares this process's address space, which therefore stays non-dumpable. A
    /// supervised child that is stuck also holds up its supervisor, which the caller still
    /// waits for. Spawner thread only.
    nonisolated(unsafe) private static var stuck: [ck_spawn_result] = []

    /// The clone and the handshake, on the spawner thread.
    private static func run(plan box: SendablePlan, spec: ProcessSpec, cgroup: Cgroup?) throws(KernelError)
        -> ProcessHandle
    {
        reapStuckChildren()
        let plan = box.plan
        var result = ck_spawn_result()
        var failure = ck_failure()
        guard ck_spawn(&plan.config, &result, &failure) == 0 else {
            plan.closeHostDescriptors()
            try? cgroup?.destroy()
            throw KernelError(failure)
        }
        plan.closeChildDescriptors()
        let supervisor = spec.supervision.map { supervision in
            ProcessHandle.Supervisor(pid: result.supervisor_pid, pidfd: result.supervisor_pidfd,
                                     statusPath: supervision.statusPath)
        }
        // The supervisor holds the output pipes now.
        if supervisor != nil { plan.closeHostDescriptors() }

        // Undo everything if a host-side step or the child fails. Once a handle exists it owns
        // the pidfds (and closes them in deinit): they must not be closed here as well.
        func abandon(_ error: KernelError, handleOwnsPidfds: Bool = false) -> KernelError {
            if result.sync_fd >= 0 { close(result.sync_fd) }
            _ = ck_pidfd_send_signal(result.pidfd, SIGKILL)
            if !handleOwnsPidfds && error.code == .timedOut && !exited(result.pidfd, within: 100) {
                // Still in the kernel: it dies when its call returns. Keep its pidfd (and the
                // stack it may be on) for a later spawn to reap; this caller need not wait.
                var parked = result
                parked.supervisor_pidfd = -1
                stuck.append(parked)
            } else {
                var code: Int32 = 0, status: Int32 = 0
                while ck_waitid_pidfd(result.pidfd, WEXITED, &code, &status) < 0 && errno == EINTR {}
                if !handleOwnsPidfds { close(result.pidfd) }
                ck_spawn_release(&result)
            }
            // A supervisor exits once it has reaped the child: wait, so that it records nothing
            // after the caller has undone the spawn.
            if let supervisor {
                var code: Int32 = 0, status: Int32 = 0
                while ck_waitid_pidfd(supervisor.pidfd, WEXITED, &code, &status) < 0 && errno == EINTR {}
                if !handleOwnsPidfds { close(supervisor.pidfd) }
            }
            plan.closeHostDescriptors()
            try? cgroup?.killAll()
            try? cgroup?.destroy()
            return error
        }

        // The kernel keeps one OOM score for all the processes of an address space: written
        // while the child still shares ours (CLONE_VM, up to its execve), the child's score
        // becomes this process's too. This process's own is put back once the child has
        // exec'd or died, whichever way this function ends.
        let ownScore = spec.oomScoreAdjustment == nil ? nil
            : (try? readWholeFile("/proc/self/oom_score_adj", limit: 16)).map { String(decoding: $0, as: UTF8.self) }
        defer { if let ownScore { try? writeFile("/proc/self/oom_score_adj", ownScore) } }
        do {
            try prepare(pid: result.pid, spec: spec, cgroup: cgroup)
        } catch {
            throw abandon(error)
        }
        var master: Int32 = -1
        // ck_spawn_continue closes the sync socket in every case.
        guard ck_spawn_continue(&plan.config, &result, &master, &failure) == 0 else {
            throw abandon(KernelError(failure))
        }
        // The child has exec'd: it no longer runs on the stack or shares our address space.
        ck_spawn_release(&result)

        let handle: ProcessHandle
        do {
            handle = ProcessHandle(
                pid: result.pid, pidfd: result.pidfd, supervisor: supervisor, cgroup: cgroup,
                standardInput: plan.hostStdin.map(ProcessInput.init(owning:)),
                standardOutput: plan.hostStdout.map(ProcessOutput.init(owning:)),
                standardError: plan.hostStderr.map(ProcessOutput.init(owning:)),
                terminal: try spec.io.terminal.map { size throws(KernelError) in
                    guard master >= 0 else {
                        throw KernelError(code: .protocolViolation, stage: .terminal, detail: "init sent no terminal")
                    }
                    return try Terminal(master: master, size: size)
                })
            plan.hostStdin = nil
            plan.hostStdout = nil
            plan.hostStderr = nil
        } catch {
            throw abandon(error)
        }
        do {
            try handle.watchExit()
        } catch {
            throw abandon(error, handleOwnsPidfds: true)
        }
        return handle
    }

    /// Whether the process behind `pidfd` exits within `milliseconds` (the pidfd turns readable).
    private static func exited(_ pidfd: Int32, within milliseconds: Int32) -> Bool {
        var entry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, milliseconds) == 1
    }

    private static func reapStuckChildren() {
        stuck.removeAll { parked in
            guard exited(parked.pidfd, within: 0) else { return false }
            var parked = parked
            var code: Int32 = 0, status: Int32 = 0
            _ = ck_waitid_pidfd(parked.pidfd, WEXITED, &code, &status)
            close(parked.pidfd)
            ck_spawn_release(&parked)
            return true
        }
    }

    /// The parent's part of the init sequence, between clone and CONTINUE.
    private static func prepare(pid: pid_t, spec: ProcessSpec, cgroup: Cgroup?) throws(KernelError) {
        // The maps must be written before the child uses any id-dependent privilege; gid_map is
        // written by a privileged parent, so setgroups need not be denied.
        if spec.namespaces.contains(.user) && !spec.joinNamespaces.contains(where: { $0.kind == .user }) {
            try writeMap(spec.uidMappings, to: "/proc/\(pid)/uid_map")
            try writeMap(spec.gidMappings, to: "/proc/\(pid)/gid_map")
        }
        for limit in spec.resourceLimits {
            _ = try KernelError.from(try sys("prlimit \(limit.resource.rawValue) on process \(pid)") {
                ck_prlimit(pid, limit.resource.rawValue, limit.soft, limit.hard)
            })
        }
        // Joined while the child still waits, so it never runs a step outside its limits.
        // (CLONE_INTO_CGROUP would save this write on v2, but it needs clone3, and the
        // address-space-sharing clone that makes spawning cheap exists only as clone.)
        try (cgroup ?? spec.joinCgroup)?.attach(pid: pid)
        if let adjustment = spec.oomScoreAdjustment {
            try writeFile("/proc/\(pid)/oom_score_adj", "\(adjustment)")
        }
    }

    private static func writeMap(_ mappings: [IDMapping], to path: String) throws(KernelError) {
        guard !mappings.isEmpty else {
            throw KernelError(code: .invalidArgument, detail: "a user namespace needs uid and gid mappings (\(path))")
        }
        try writeFile(path, mappings.map { "\($0.containerID) \($0.hostID) \($0.size)\n" }.joined())
    }
}

/// Writes a small control file (procfs, cgroupfs) in one `write`, as the kernel expects.
package func writeFile(_ path: String, _ contents: String) throws(KernelError) {
    let fd = try KernelError.from(try sys("open \(path)") { open(path, O_WRONLY | O_CLOEXEC) })
    defer { close(fd) }
    let bytes = Array(contents.utf8)
    let written = try KernelError.from(try sys("write \(path)") { bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } })
    guard written == bytes.count else {
        throw KernelError(code: .syscallFailed, detail: "short write to \(path)")
    }
}

/// Carries the plan to the spawner thread; it is used there only, while the caller waits.
private struct SendablePlan: @unchecked Sendable {
    let plan: SpawnPlan
    init(_ plan: SpawnPlan) { self.plan = plan }
}

extension KernelError {
    /// Turns the shim's failure report into a typed error.
    init(_ failure: ck_failure) {
        let detail = withUnsafeBytes(of: failure.detail) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let stage = InitStage(ck: failure.stage)
        let code: Code = failure.timed_out != 0 ? .timedOut : stage == .clone ? .syscallFailed : .initFailed
        self.init(code: code, stage: stage, errno: failure.error != 0 ? Errno(rawValue: failure.error) : nil,
                  detail: detail)
    }
}
