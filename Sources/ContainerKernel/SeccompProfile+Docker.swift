import FoundationEssentials
import Glibc

extension SeccompProfile {
    /// Reads a seccomp profile from JSON, in the runtime spec's format or in Docker's.
    ///
    /// Docker's format adds `archMap` (the architectures to filter, chosen by the native one), a
    /// single `name` instead of `names`, and per-rule `includes` and `excludes` conditions on
    /// capabilities, architectures and the kernel version (`minKernel`). They are resolved here,
    /// for this machine and the given capabilities, exactly as Docker resolves them: a rule is kept
    /// when it names none of `excludes` and all of `includes`.
    ///
    /// Every action, operator and flag is checked now, so a bad profile fails when it is read
    /// rather than when a container starts.
    ///
    /// - Parameters:
    ///   - json: The profile's JSON text.
    ///   - capabilities: The bounding capabilities the process will have, which Docker's
    ///     `includes.caps` and `excludes.caps` test.
    /// - Throws: ``KernelError`` with code ``KernelError/Code/invalidArgument`` when the JSON is
    ///   malformed or a rule has an unknown action, operator, argument index or flag, and
    ///   ``KernelError/Code/unsupported`` for `SCMP_ACT_NOTIFY`.
    public init(json: [UInt8], capabilities: Set<Capability> = Capability.dockerDefault) throws(KernelError) {
        let file: DockerProfile
        do {
            file = try JSONDecoder().decode(DockerProfile.self, from: Data(json))
        } catch {
            throw KernelError(code: .invalidArgument, detail: "seccomp profile: \(Self.describe(error))")
        }
        self = file.resolved(for: capabilities)
        _ = try lowered()
    }

    /// Docker's default seccomp profile, resolved for the capabilities the process will have.
    ///
    /// Unmatched calls fail with `EPERM`. Granting capabilities allows more calls, as in Docker:
    /// `CAP_SYS_ADMIN` allows `mount`, `unshare`, `setns` and namespace flags to `clone`
    /// (without it `clone` is allowed only with no `CLONE_NEW*` flag, and `clone3` fails with
    /// `ENOSYS` so that the C library falls back to `clone`); `CAP_SYS_PTRACE` allows `kcmp` and
    /// `pidfd_getfd`; `CAP_SYS_MODULE`, `CAP_SYS_BOOT`, `CAP_SYS_TIME` and others each allow
    /// their calls. On x86-64 the profile also filters 32-bit x86 and x32 calls.
    ///
    /// - Parameter capabilities: The bounding capabilities the process will have.
    /// - Returns: A profile in the runtime spec's form.
    public static func dockerDefault(capabilities: Set<Capability>) -> SeccompProfile {
        DockerProfile.moby.resolved(for: capabilities)
    }

    /// Words for a decoding failure, naming the JSON path, such as `missing "syscalls[3].action"`.
    private static func describe(_ error: any Error) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.reduce(into: "") { text, key in
                if let index = key.intValue {
                    text += "[\(index)]"
                } else {
                    text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
                }
            }
        }
        switch error as? DecodingError {
        case .keyNotFound(let key, let context):
            return "missing \"\(path(context.codingPath + [key]))\""
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "\"\(path(context.codingPath))\" has the wrong type"
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return "not valid JSON"
        case .dataCorrupted(let context):
            return "\"\(path(context.codingPath))\": \(context.debugDescription)"
        default:
            return "not valid JSON"
        }
    }
}

/// A profile in Docker's format, before its conditions are resolved for one machine and process.
///
/// This is the shape of moby's `profiles/seccomp` `Seccomp` type. A runtime-spec profile is the
/// special case with no `archMap` and no conditions.
struct DockerProfile: Decodable, Sendable {
    /// The profile's actions, flags and explicit architectures; its rules are in ``rules``.
    var base: SeccompProfile
    /// For each native architecture, the others to filter with it.
    var archMap: [(architecture: SeccompProfile.Architecture, subArchitectures: [SeccompProfile.Architecture])]
    var rules: [DockerRule]

    init(
        base: SeccompProfile,
        archMap: [(architecture: SeccompProfile.Architecture, subArchitectures: [SeccompProfile.Architecture])],
        rules: [DockerRule]
    ) {
        self.base = base
        self.archMap = archMap
        self.rules = rules
    }

    private enum CodingKeys: String, CodingKey { case archMap, syscalls }

    private struct ArchMapEntry: Decodable {
        var architecture: SeccompProfile.Architecture
        var subArchitectures: [SeccompProfile.Architecture]?
    }

    init(from decoder: any Decoder) throws {
        var base = try SeccompProfile(from: decoder)
        base.syscalls = []
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let entries = try container.decodeIfPresent([ArchMapEntry].self, forKey: .archMap) ?? []
        // Docker refuses the ambiguity rather than picking one (moby seccomp_linux.go).
        if !entries.isEmpty && !base.architectures.isEmpty {
            throw DecodingError.dataCorruptedError(
                forKey: .archMap, in: container,
                debugDescription: "use either \"architectures\" or \"archMap\", not both")
        }
        self.base = base
        self.archMap = entries.map { ($0.architecture, $0.subArchitectures ?? []) }
        self.rules = try container.decodeIfPresent([DockerRule].self, forKey: .syscalls) ?? []
    }

    /// The runtime-spec profile for this machine and a process with `capabilities`.
    func resolved(for capabilities: Set<Capability>) -> SeccompProfile {
        var profile = base
        if let entry = archMap.first(where: { $0.architecture == NativeArchitecture.seccomp }) {
            profile.architectures = [entry.architecture] + entry.subArchitectures
        }
        let held = Set(capabilities.map { DockerRule.Condition.normalized($0.name) })
        profile.syscalls = rules.filter { $0.applies(capabilities: held) }.map(\.rule)
        return profile
    }
}

/// A rule in Docker's format: a runtime-spec rule plus the conditions under which it applies.
struct DockerRule: Decodable, Sendable {
    var rule: SeccompProfile.Rule
    var includes = Condition()
    var excludes = Condition()

    init(
        _ names: [String], _ action: SeccompProfile.Action = .allow, errnoRet: UInt32? = nil,
        args: [SeccompProfile.Argument] = [], includes: Condition = Condition(), excludes: Condition = Condition()
    ) {
        self.rule = SeccompProfile.Rule(names: names, action: action, errnoRet: errnoRet, args: args)
        self.includes = includes
        self.excludes = excludes
    }

    /// Capabilities, architectures and a kernel version that a rule requires or rules out.
    struct Condition: Decodable, Sendable {
        /// Capability names such as `CAP_SYS_ADMIN`, normalized by ``normalized(_:)``.
        var caps: [String] = []
        /// Go architecture names such as `amd64` (Docker tests these against `GOARCH`).
        var arches: [String] = []
        var minKernel: KernelVersion?

        init(caps: [String] = [], arches: [String] = [], minKernel: KernelVersion? = nil) {
            self.caps = caps.map(Self.normalized)
            self.arches = arches
            self.minKernel = minKernel
        }

        private enum CodingKeys: String, CodingKey { case caps, arches, minKernel }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            caps = (try container.decodeIfPresent([String].self, forKey: .caps) ?? []).map(Self.normalized)
            arches = try container.decodeIfPresent([String].self, forKey: .arches) ?? []
            if let text = try container.decodeIfPresent(String.self, forKey: .minKernel) {
                guard let version = KernelVersion(text) else {
                    throw DecodingError.dataCorruptedError(
                        forKey: .minKernel, in: container,
                        debugDescription: "kernel version \"\(text)\" is not of the form major.minor")
                }
                minKernel = version
            }
        }

        /// A capability name as Docker writes it: upper case with the `CAP_` prefix.
        static func normalized(_ name: String) -> String {
            let upper = name.uppercased()
            return upper.hasPrefix("CAP_") ? upper : "CAP_" + upper
        }
    }

    private enum CodingKeys: String, CodingKey { case name, names, includes, excludes }

    init(from decoder: any Decoder) throws {
        rule = try SeccompProfile.Rule(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let name = try container.decodeIfPresent(String.self, forKey: .name) {
            guard rule.names.isEmpty else {
                throw DecodingError.dataCorruptedError(
                    forKey: .name, in: container, debugDescription: "use either \"name\" or \"names\", not both")
            }
            rule.names = [name]
        }
        includes = try container.decodeIfPresent(Condition.self, forKey: .includes) ?? Condition()
        excludes = try container.decodeIfPresent(Condition.self, forKey: .excludes) ?? Condition()
    }

    /// Whether the rule applies on this machine to a process holding `capabilities` (normalized
    /// names): moby's `setupSeccomp` tests `excludes` first (any match drops the rule), then
    /// `includes` (every listed condition must hold).
    func applies(capabilities: Set<String>) -> Bool {
        let arch = NativeArchitecture.goName
        if excludes.arches.contains(arch) || excludes.caps.contains(where: { capabilities.contains($0) }) {
            return false
        }
        if let minimum = excludes.minKernel, KernelVersion.running >= minimum { return false }
        if !includes.arches.isEmpty && !includes.arches.contains(arch) { return false }
        if !includes.caps.allSatisfy({ capabilities.contains($0) }) { return false }
        if let minimum = includes.minKernel, KernelVersion.running < minimum { return false }
        return true
    }
}

/// A kernel version as `major.minor`, which is all Docker's `minKernel` compares.
struct KernelVersion: Comparable, Sendable {
    var major: Int
    var minor: Int

    init(_ major: Int, _ minor: Int) {
        self.major = major
        self.minor = minor
    }

    /// Parses the leading `major.minor` of a version such as `4.8` or `6.18.0-1-amd64`.
    init?(_ text: String) {
        let parts = text.split(separator: ".", maxSplits: 2)
        guard parts.count >= 2, let major = Int(parts[0]),
            let minor = Int(parts[1].prefix(while: \.isNumber))
        else { return nil }
        self.init(major, minor)
    }

    static func < (lhs: KernelVersion, rhs: KernelVersion) -> Bool {
        (lhs.major, lhs.minor) < (rhs.major, rhs.minor)
    }

    /// The running kernel's version, from `uname(2)`.
    ///
    /// `uname` fails only on a bad pointer, and Linux release strings always start with
    /// `major.minor`; if one ever does not, 0.0 is used, which drops rules that need a minimum
    /// kernel (in Docker's profile, only the ptrace rule that needs 4.8).
    static let running: KernelVersion = {
        var name = utsname()
        guard uname(&name) == 0 else { return KernelVersion(0, 0) }
        let release = withUnsafeBytes(of: &name.release) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return KernelVersion(release) ?? KernelVersion(0, 0)
    }()
}

/// The names Docker's profile format uses for the machine Berth was built for.
enum NativeArchitecture {
    // `goName` is what moby's `goToNative` maps `runtime.GOARCH` to, which `includes.arches` and
    // `excludes.arches` are tested against; `seccomp` picks the `archMap` entry.
    #if arch(x86_64)
        static let goName = "amd64"
        static let seccomp = SeccompProfile.Architecture.x86_64
    #elseif arch(arm64)
        static let goName = "arm64"
        static let seccomp = SeccompProfile.Architecture.aarch64
    #elseif arch(s390x)
        static let goName = "s390x"
        static let seccomp = SeccompProfile.Architecture.s390x
    #elseif arch(riscv64)
        static let goName = "riscv64"
        static let seccomp = SeccompProfile.Architecture.riscv64
    #elseif arch(powerpc64le)
        static let goName = "ppc64le"
        static let seccomp = SeccompProfile.Architecture.ppc64le
    #else
        #error("add this architecture's Go and libseccomp names for Docker's seccomp profile format")
    #endif
}

extension DockerProfile {
    /// Docker's default profile, transcribed from moby's `seccomp/default.json` in the
    /// github.com/moby/profiles repository (commit 02e898b137ae, the successor of moby/moby's
    /// `profiles/seccomp`), which blocks the AF_ALG and AF_VSOCK socket families and no longer
    /// allows `io_uring_*`.
    ///
    /// The archMap entries for MIPS and LoongArch are left out: Berth does not build there.
    /// Calls newer than the installed libseccomp (2.5.4 on Debian 12 knows nothing after Linux
    /// 6.1, such as `fchmodat2` or `mseal`) are skipped at compile time and so fail with `EPERM`.
    static let moby = DockerProfile(
        base: SeccompProfile(defaultAction: .errno, defaultErrnoRet: UInt32(EPERM)),
        archMap: [
            (.x86_64, [.x86, .x32]),
            (.aarch64, [.arm]),
            (.s390x, [.s390]),
            (.riscv64, []),
        ],
        rules: [DockerRule(allowedByDefault)]
            + [
                DockerRule(
                    ["process_vm_readv", "process_vm_writev", "ptrace"], includes: .init(minKernel: .init(4, 8)))
            ]
            + socketRules
            // Only the personalities programs ask for: PER_LINUX, PER_LINUX32, UNAME26 (with and
            // without PER_LINUX32), and 0xffffffff, which only queries the current one.
            + [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff].map {
                DockerRule(["personality"], args: [.init(index: 0, value: $0, op: .equal)])
            }
            + [
                DockerRule(["sync_file_range2", "swapcontext"], includes: .init(arches: ["ppc64le"])),
                DockerRule(
                    [
                        "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
                        "set_tls",
                    ],
                    includes: .init(arches: ["arm", "arm64"])),
                DockerRule(["arch_prctl"], includes: .init(arches: ["amd64", "x32"])),
                DockerRule(["modify_ldt"], includes: .init(arches: ["amd64", "x32", "x86"])),
                DockerRule(
                    ["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
                    includes: .init(arches: ["s390", "s390x"])),
                DockerRule(["riscv_flush_icache"], includes: .init(arches: ["riscv64"])),
                DockerRule(["open_by_handle_at"], includes: .init(caps: ["CAP_DAC_READ_SEARCH"])),
                DockerRule(
                    [
                        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
                        "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "mount",
                        "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl", "quotactl_fd",
                        "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2", "unshare",
                    ],
                    includes: .init(caps: ["CAP_SYS_ADMIN"])),
                // Without CAP_SYS_ADMIN, clone may not create namespaces: the flags argument masked
                // with CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP must be 0. On s390
                // the flags are the second argument.
                DockerRule(
                    ["clone"], args: [.init(index: 0, value: namespaceFlags, valueTwo: 0, op: .maskedEqual)],
                    excludes: .init(caps: ["CAP_SYS_ADMIN"], arches: ["s390", "s390x"])),
                DockerRule(
                    ["clone"], args: [.init(index: 1, value: namespaceFlags, valueTwo: 0, op: .maskedEqual)],
                    includes: .init(arches: ["s390", "s390x"]), excludes: .init(caps: ["CAP_SYS_ADMIN"])),
                // clone3 passes its flags in memory, which seccomp cannot see; ENOSYS makes glibc
                // fall back to clone, where the rule above applies.
                DockerRule(["clone3"], .errno, errnoRet: UInt32(ENOSYS), excludes: .init(caps: ["CAP_SYS_ADMIN"])),
                DockerRule(["reboot"], includes: .init(caps: ["CAP_SYS_BOOT"])),
                DockerRule(["chroot"], includes: .init(caps: ["CAP_SYS_CHROOT"])),
                DockerRule(
                    ["delete_module", "init_module", "finit_module"], includes: .init(caps: ["CAP_SYS_MODULE"])),
                DockerRule(["acct"], includes: .init(caps: ["CAP_SYS_PACCT"])),
                DockerRule(
                    ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"],
                    includes: .init(caps: ["CAP_SYS_PTRACE"])),
                DockerRule(["iopl", "ioperm"], includes: .init(caps: ["CAP_SYS_RAWIO"])),
                DockerRule(
                    ["settimeofday", "stime", "clock_settime", "clock_settime64"],
                    includes: .init(caps: ["CAP_SYS_TIME"])),
                DockerRule(["vhangup"], includes: .init(caps: ["CAP_SYS_TTY_CONFIG"])),
                DockerRule(
                    ["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
                    includes: .init(caps: ["CAP_SYS_NICE"])),
                DockerRule(["syslog"], includes: .init(caps: ["CAP_SYSLOG"])),
                DockerRule(["bpf"], includes: .init(caps: ["CAP_BPF"])),
                DockerRule(["perf_event_open"], includes: .init(caps: ["CAP_PERFMON"])),
            ]
    )

    /// `CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
    /// CLONE_NEWCGROUP` (2114060288).
    private static let namespaceFlags: UInt64 = 0x7E02_0000

    /// `socket(2)` for the address families moby allows. It blocks AF_ALG (38, the kernel crypto
    /// API) and AF_VSOCK (40, host–guest sockets that are not per network namespace), plus the
    /// families Linux has removed (12, 19, 20, 23, 25, 34, 37). Families 1 to 11 are one `<`
    /// comparison; the rest need one rule each, because several conditions on one argument become
    /// separate alternatives (runc issue 2735). `socketcall`, which 32-bit x86 multiplexes sockets
    /// through, passes its arguments in memory and stays allowed, as in Docker.
    private static let socketRules: [DockerRule] =
        [DockerRule(["socket"], args: [.init(index: 0, value: 12, op: .lessThan)])]
        + [13, 14, 15, 16, 17, 18, 21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39, 41, 42, 43, 44, 45].map {
            DockerRule(["socket"], args: [.init(index: 0, value: $0, op: .equal)])
        }

    /// The calls allowed whatever the capabilities.
    private static let allowedByDefault = [
        "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget", "capset",
        "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
        "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
        "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
        "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
        "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat",
        "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
        "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr",
        "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
        "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait",
        "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid",
        "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer",
        "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
        "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid",
        "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32",
        "getxattr", "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
        "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
        "ioprio_get", "ioprio_set", "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule",
        "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat",
        "listen", "listmount", "listxattr", "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek",
        "lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create",
        "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap",
        "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
        "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv",
        "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat",
        "_newselect", "open", "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2",
        "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64",
        "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64",
        "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
        "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "removexattrat", "rename",
        "renameat", "renameat2", "restart_syscall", "riscv_hwprobe", "rmdir", "rseq", "rt_sigaction",
        "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
        "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
        "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
        "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop", "semtimedop",
        "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid",
        "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
        "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
        "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid", "setsockopt",
        "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "setxattrat", "shmat", "shmctl",
        "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn",
        "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statmount", "statx",
        "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time",
        "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
        "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
        "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname",
        "unlink", "unlinkat", "uretprobe", "utime", "utimensat", "utimensat_time64", "utimes", "vfork",
        "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
    ]
}
