import CChildPath
import CSyscalls
import Glibc
import SystemSupport

/// The flat C description of one spawn (`ck_spawn_config`), built from a ``ProcessSpec`` in
/// the parent. It owns every allocation and descriptor the config points to and releases them
/// in `deinit`, after the child has exec'd or failed.
final class SpawnPlan {
    var config = ck_spawn_config()
    /// Host ends of stdio pipes, handed to the ``ProcessHandle``.
    var hostStdin: Int32?
    var hostStdout: Int32?
    var hostStderr: Int32?
    private var allocations: [UnsafeMutableRawPointer] = []
    private var descriptors: [Int32] = []

    init(_ spec: ProcessSpec, seccomp: SeccompProgram?) throws(KernelError) {
        guard let program = spec.arguments.first, !program.isEmpty else {
            throw KernelError(code: .invalidArgument, detail: "no program to run: the argument list is empty")
        }
        guard spec.extraFiles.count <= 64 else {
            throw KernelError(code: .invalidArgument, detail: "at most 64 extra files can be passed, not \(spec.extraFiles.count)")
        }
        _ = program
        // The supervisor outlives this program: nothing may need this program's end of a pipe.
        if spec.supervision != nil
            && (spec.io.terminal != nil || { if case .pipe = spec.io.standardInput { true } else { false } }()) {
            throw KernelError(code: .unsupported, stage: .supervisor,
                              detail: "a supervised process cannot have a terminal or a stdin pipe")
        }
        config.join_pid_fd = -1
        config.supervisor_exec_fd = -1
        // The program is exec'd through the embedded supervisor (a sealed memfd), so that the
        // kernel never resolves it, or a "#!/proc/self/exe" interpreter, while /proc/self/exe
        // names this program's executable. Without an embedded image (another architecture)
        // the program is exec'd directly.
        config.exec_trampoline_fd = Supervision.embeddedDescriptor() ?? -1

        // Namespaces: what is joined is not created.
        let joinedKinds = spec.joinNamespaces.reduce(Namespaces()) { $0.union($1.kind) }
        config.clone_flags = spec.namespaces.subtracting(joinedKinds).rawValue
        var joins: [ck_namespace] = []
        for join in spec.joinNamespaces.sorted(by: { $0.kind == .user && $1.kind != .user }) {
            let fd = try own(KernelError.from(try sys("open namespace \(join.path)") { open(join.path, O_RDONLY | O_CLOEXEC) }))
            // A path below /proc/<pid> names whatever process has that pid now: the process the
            // caller meant is checked to be alive after the open, so the pid was not reused.
            if let process = join.process, !process.isAlive {
                throw KernelError(code: .invalidState, detail: "process \(process.pid) exited before its \(join.kind) could be joined")
            }
            if join.kind == .pid {
                config.join_pid_fd = fd
            } else {
                joins.append(ck_namespace(fd: fd, type: Int32(truncatingIfNeeded: join.kind.rawValue)))
            }
        }
        config.join = array(joins)
        config.join_count = UInt32(joins.count)

        // Root filesystem and mounts.
        if let rootfs = spec.rootfs {
            guard spec.namespaces.contains(.mount) || joinedKinds.contains(.mount) else {
                throw KernelError(code: .invalidArgument, stage: .rootfs,
                                  detail: "a root filesystem needs a new or joined mount namespace: \(rootfs)")
            }
            config.rootfs = string(rootfs)
            config.rootfs_readonly = spec.readOnlyRootfs ? 1 : 0
            var mounts: [ck_mount] = []
            for mount in spec.mounts {
                guard mount.target.hasPrefix("/") else {
                    throw KernelError(code: .invalidArgument, detail: "mount target \"\(mount.target)\" is not absolute")
                }
                var entry = ck_mount()
                // One spelling per path, so that the shim's checks of where a target lands
                // compare like with like.
                entry.target = string(Self.normalized(mount.target))
                entry.flags = mount.options.rawValue
                entry.propagation = mount.propagation?.flags ?? 0
                switch mount.source {
                case .bind(let host):
                    var st = stat()
                    _ = try KernelError.from(try sys("stat bind source \(host)") { stat(host, &st) })
                    entry.kind = UInt32(CK_MOUNT_BIND.rawValue)
                    entry.source = string(host)
                    entry.target_is_file = (st.st_mode & S_IFMT) == S_IFDIR ? 0 : 1
                case .filesystem(let type, let source, let data):
                    entry.kind = UInt32(CK_MOUNT_FS.rawValue)
                    entry.fstype = string(type)
                    entry.source = string(source)
                    entry.data = data.map(string)
                    entry.sysfs_fallback = type == "sysfs" ? 1 : 0
                }
                mounts.append(entry)
            }
            config.mounts = array(mounts)
            config.mount_count = UInt32(mounts.count)
            let devices = spec.devices.map { device in
                ck_device(
                    path: string(device.path),
                    mode: (device.isCharacter ? S_IFCHR : S_IFBLK) | (device.permissions & 0o7777),
                    major: device.major, minor: device.minor, uid: 0, gid: 0)
            }
            config.devices = array(devices)
            config.device_count = UInt32(devices.count)
            config.dev_symlinks = spec.deviceSymlinks ? 1 : 0
            let masked = (spec.maskedPaths ?? Mount.dockerMaskedPaths).map { Optional(string($0)) }
            config.masked_paths = array(masked)
            config.masked_count = UInt32(masked.count)
            let readOnly = (spec.readOnlyPaths ?? Mount.dockerReadOnlyPaths).map { Optional(string($0)) }
            config.readonly_paths = array(readOnly)
            config.readonly_count = UInt32(readOnly.count)
        }
        config.rootfs_propagation = spec.rootPropagation.flags

        config.hostname = spec.hostname.map(string)
        config.domainname = spec.domainName.map(string)
        let sysctls = spec.sysctls.sorted { $0.key < $1.key }.map { key, value in
            ck_sysctl(key: string(String(key.map { $0 == "." ? "/" : $0 })), value: string(value))
        }
        config.sysctls = array(sysctls)
        config.sysctl_count = UInt32(sysctls.count)

        // The process.
        config.argv = array(spec.arguments.map { Optional(string($0)) } + [nil])
        config.envp = array(spec.environment.map { Optional(string($0)) } + [nil])
        let path = spec.environment.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) }
        config.path = string(path ?? ProcessSpec.defaultPath)
        config.cwd = string(spec.workingDirectory)
        config.uid = spec.userID
        config.gid = spec.groupID
        config.groups = array(spec.additionalGroups)
        config.group_count = UInt32(spec.additionalGroups.count)
        // The child runs with umask 0 while it creates mount points; it always sets this one.
        config.umask = Int32(spec.umask ?? 0o022)
        config.no_new_privs = spec.noNewPrivileges ? 1 : 0
        config.cap_bounding = spec.capabilities.bounding.mask
        config.cap_effective = spec.capabilities.effective.mask
        config.cap_permitted = spec.capabilities.permitted.mask
        config.cap_inheritable = spec.capabilities.inheritable.mask
        config.cap_ambient = spec.capabilities.ambient.mask
        config.cap_last = UInt32(Capability.lastSupported.rawValue)
        if let seccomp {
            config.seccomp_filter = UnsafeRawPointer(array(seccomp.bytes))
            config.seccomp_len = UInt32(seccomp.instructionCount)
            config.seccomp_flags = seccomp.flags
        }
        config.pdeath_signal = spec.parentDeathSignal?.rawValue ?? 0
        config.init_timeout_ms = spec.initTimeout.map { timeout in
            let (seconds, attoseconds) = timeout.components
            let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
            return UInt32(clamping: max(1, milliseconds))
        } ?? 0

        // Stdio.
        if let size = spec.io.terminal {
            config.terminal = 1
            config.terminal_rows = size.rows
            config.terminal_columns = size.columns
            config.stdio = (-1, -1, -1)
        } else {
            config.stdio = (
                try input(spec.io.standardInput),
                try output(spec.io.standardOutput, inherit: 1, host: \.hostStdout),
                try output(spec.io.standardError, inherit: 2, host: \.hostStderr)
            )
        }
        let extra = spec.extraFiles.map(\.rawValue)
        config.extra_fds = array(extra)
        config.extra_fd_count = UInt32(extra.count)

        if let supervision = spec.supervision {
            // The supervisor gets the host ends of the output pipes; this program closes its own.
            let outputs = [hostStdout, hostStderr].compactMap { $0 }
            if let fd = try supervision.executableDescriptor() {
                config.supervisor_exec_fd = fd
                config.supervisor_path = string("the embedded berth-supervisor")
            } else {
                config.supervisor_path = string(try supervision.executablePath() ?? "berth-supervisor")
            }
            let arguments = supervision.arguments(stdout: hostStdout != nil, stderr: hostStderr != nil)
            config.supervisor_argv = array(arguments.map { Optional(string($0)) } + [nil])
            config.supervisor_fds = array(outputs)
            config.supervisor_fd_count = UInt32(outputs.count)
        }
    }

    /// `path` with repeated slashes and `.` components removed (`//dev/./shm/` → `/dev/shm`).
    static func normalized(_ path: String) -> String {
        "/" + path.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
    }

    deinit {
        allocations.forEach { $0.deallocate() }
        descriptors.forEach { close($0) }
        // Still here when the plan itself failed to build (a handle takes them otherwise).
        closeHostDescriptors()
    }

    /// Closes the child's ends of the stdio pipes and the other descriptors only the child
    /// needed, so the host sees end-of-file when the process closes its own copies.
    func closeChildDescriptors() {
        descriptors.forEach { close($0) }
        descriptors.removeAll()
    }

    /// Releases the host ends of the pipes after a failed spawn.
    func closeHostDescriptors() {
        [hostStdin, hostStdout, hostStderr].compactMap { $0 }.forEach { close($0) }
        hostStdin = nil
        hostStdout = nil
        hostStderr = nil
    }

    private func input(_ input: ProcessIO.Input) throws(KernelError) -> Int32 {
        switch input {
        case .null: return try own(KernelError.from(try sys("open /dev/null") { open("/dev/null", O_RDONLY | O_CLOEXEC) }))
        case .inherit: return 0
        case .fileDescriptor(let fd): return fd.rawValue
        case .pipe:
            let (read, write) = try pipe()
            hostStdin = write
            return own(read)
        }
    }

    private func output(
        _ output: ProcessIO.Output, inherit: Int32, host: ReferenceWritableKeyPath<SpawnPlan, Int32?>
    ) throws(KernelError) -> Int32 {
        switch output {
        case .null: return try own(KernelError.from(try sys("open /dev/null") { open("/dev/null", O_WRONLY | O_CLOEXEC) }))
        case .inherit: return inherit
        case .fileDescriptor(let fd): return fd.rawValue
        case .pipe:
            let (read, write) = try pipe()
            self[keyPath: host] = read
            return own(write)
        }
    }

    private func pipe() throws(KernelError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        _ = try KernelError.from(try sys("pipe2") { ck_pipe_cloexec(&fds) })
        return (fds[0], fds[1])
    }

    private func own(_ fd: Int32) -> Int32 {
        descriptors.append(fd)
        return fd
    }

    private func string(_ text: String) -> UnsafePointer<CChar> {
        let bytes = text.utf8CString
        let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: bytes.count)
        _ = buffer.initialize(from: bytes)
        allocations.append(UnsafeMutableRawPointer(buffer.baseAddress.unsafelyUnwrapped))
        return UnsafePointer(buffer.baseAddress.unsafelyUnwrapped)
    }

    private func array<T>(_ items: [T]) -> UnsafePointer<T>? {
        guard !items.isEmpty else { return nil }
        let buffer = UnsafeMutablePointer<T>.allocate(capacity: items.count)
        buffer.initialize(from: items, count: items.count)
        allocations.append(UnsafeMutableRawPointer(buffer))
        return UnsafePointer(buffer)
    }
}
