import CSeccomp
import Glibc
import SystemPackage
import SystemSupport

/// A compiled classic-BPF seccomp filter, ready for the C shim to install with `seccomp(2)`.
///
/// Compiling happens in the parent, so the child between `clone` and `execve` only passes these
/// bytes to the kernel.
public struct SeccompProgram: Sendable, Hashable {
    /// The raw `struct sock_filter` array, 8 bytes per instruction, in the machine's byte order.
    package var bytes: [UInt8]
    /// The `SECCOMP_FILTER_FLAG_*` bits for `seccomp(SECCOMP_SET_MODE_FILTER, flags, …)`.
    package var flags: UInt32

    /// The number of BPF instructions in the filter.
    public var instructionCount: Int { bytes.count / 8 }

    /// A program from raw `struct sock_filter` bytes (tests build odd filters this way).
    package init(bytes: [UInt8], flags: UInt32) {
        self.bytes = bytes
        self.flags = flags
    }
}

extension SeccompProfile {
    /// Compiles the profile into a BPF program with libseccomp.
    ///
    /// The program filters the native architecture plus each of ``architectures`` that the
    /// installed libseccomp knows. As runc does, a system call name that does not exist on this
    /// machine, or that libseccomp does not know, is skipped, and a rule whose action is the
    /// default action is left out. This does not load the filter.
    ///
    /// - Returns: The program and its `seccomp(2)` flags.
    /// - Throws: ``KernelError`` with code ``KernelError/Code/invalidArgument`` naming the rule
    ///   when an action, operator, argument index, error number or flag is invalid or libseccomp
    ///   rejects a rule, or when the program is longer than the kernel accepts (4096
    ///   instructions); ``KernelError/Code/unsupported`` for `SCMP_ACT_NOTIFY` or an
    ///   architecture that cannot share a filter with the native one;
    ///   ``KernelError/Code/syscallFailed`` when the program cannot be exported.
    public func compile() throws(KernelError) -> SeccompProgram {
        let plan = try lowered()
        guard let context = seccomp_init(plan.defaultAction) else {
            throw KernelError(
                code: .unsupported, detail: "seccomp default action \(defaultAction): libseccomp refused it")
        }
        defer { seccomp_release(context) }

        for architecture in architectures {
            let token = seccomp_arch_resolve_name(libseccompName(of: architecture))
            guard token != 0 else { continue }
            let rc = seccomp_arch_add(context, token)
            // The native architecture is already in a new filter.
            guard rc == 0 || rc == -EEXIST else {
                throw KernelError(
                    code: .unsupported, errno: Errno(rawValue: -rc),
                    detail: "seccomp architecture \(architecture): cannot be filtered with the native one")
            }
        }

        for rule in plan.rules where rule.action != plan.defaultAction {
            for name in rule.names {
                let number = seccomp_syscall_resolve_name(name)
                guard number != __NR_SCMP_ERROR else { continue }
                for comparisons in rule.alternatives {
                    let rc = comparisons.withUnsafeBufferPointer { buffer in
                        seccomp_rule_add_array(context, rule.action, number, UInt32(buffer.count), buffer.baseAddress)
                    }
                    guard rc == 0 else {
                        throw KernelError(
                            code: .invalidArgument, errno: Errno(rawValue: -rc),
                            detail: "\(rule.label): libseccomp rejected it for \"\(name)\"")
                    }
                }
            }
        }
        let program = SeccompProgram(bytes: try export(context), flags: plan.flags)
        // The kernel refuses longer programs (BPF_MAXINSNS); say so now rather than at spawn.
        guard program.instructionCount <= 4096 else {
            throw KernelError(
                code: .invalidArgument,
                detail: "seccomp profile: \(program.instructionCount) BPF instructions, more than the kernel's 4096")
        }
        return program
    }

    /// Writes the filter as BPF into an anonymous temporary file and reads it back: libseccomp
    /// 2.5 can only export to a file descriptor.
    ///
    /// A memfd would avoid touching `/tmp`, but glibc declares `memfd_create` only under
    /// `_GNU_SOURCE`, which Swift's Glibc module is not built with; `tmpfile` is standard C and
    /// the file is gone once closed.
    private func export(_ context: scmp_filter_ctx) throws(KernelError) -> [UInt8] {
        guard let file = tmpfile() else {
            throw KernelError(
                code: .syscallFailed, errno: Errno(rawValue: Glibc.errno),
                detail: "create a temporary file for the seccomp filter")
        }
        defer { fclose(file) }
        let fd = fileno(file)
        let rc = seccomp_export_bpf(context, fd)
        guard rc == 0 else {
            throw KernelError(code: .syscallFailed, errno: Errno(rawValue: -rc), detail: "export the seccomp filter")
        }
        let size = try KernelError.from(try sys("lseek in the seccomp filter") { lseek(fd, 0, SEEK_END) })
        var bytes = [UInt8](repeating: 0, count: Int(size))
        var filled = 0
        while filled < bytes.count {
            let count = try KernelError.from(try sys("read the seccomp filter") {
                bytes.withUnsafeMutableBytes { buffer in
                    pread(fd, buffer.baseAddress.map { $0 + filled }, buffer.count - filled, off_t(filled))
                }
            })
            guard count > 0 else {
                throw KernelError(code: .syscallFailed, detail: "read the seccomp filter: ended after \(filled) bytes")
            }
            filled += count
        }
        return bytes
    }

    /// libseccomp's own spelling of an architecture: `SCMP_ARCH_X86_64` is `x86_64`.
    private func libseccompName(of architecture: Architecture) -> String {
        let name = architecture.rawValue
        let prefix = "SCMP_ARCH_"
        return (name.hasPrefix(prefix) ? String(name.dropFirst(prefix.count)) : name).lowercased()
    }

    /// The profile with every action, operator and flag turned into libseccomp's and the
    /// kernel's numbers, or an error naming the first one that is wrong.
    func lowered() throws(KernelError) -> LoweredSeccompProfile {
        let defaultValue = try defaultAction.value(errnoRet: defaultErrnoRet, in: "seccomp default action")
        var flagBits: UInt32 = 0
        for flag in flags {
            guard let bit = flag.bit else {
                throw KernelError(code: .invalidArgument, detail: "seccomp profile: unknown flag \"\(flag)\"")
            }
            flagBits |= bit
        }
        var rules: [LoweredSeccompProfile.Rule] = []
        for (index, rule) in syscalls.enumerated() {
            let label = "seccomp rule \(index)" + (rule.names.first.map { " (\"\($0)\")" } ?? "")
            guard !rule.names.isEmpty else {
                throw KernelError(code: .invalidArgument, detail: "\(label): no system call names")
            }
            let action = try rule.action.value(errnoRet: rule.errnoRet, in: label)
            var comparisons: [scmp_arg_cmp] = []
            for argument in rule.args {
                guard argument.index < 6 else {
                    throw KernelError(
                        code: .invalidArgument, detail: "\(label): argument index \(argument.index) is not 0 to 5")
                }
                guard let op = argument.op.comparison else {
                    throw KernelError(code: .invalidArgument, detail: "\(label): unknown operator \"\(argument.op)\"")
                }
                comparisons.append(
                    scmp_arg_cmp(arg: argument.index, op: op, datum_a: argument.value, datum_b: argument.valueTwo))
            }
            // libseccomp takes at most one comparison per argument in a rule, so runc turns
            // repeated ones into separate rules, any of which matches; do the same.
            let repeated = Set(comparisons.map(\.arg)).count < comparisons.count
            rules.append(
                .init(
                    label: label, names: rule.names, action: action,
                    alternatives: repeated ? comparisons.map { [$0] } : [comparisons]))
        }
        return LoweredSeccompProfile(defaultAction: defaultValue, flags: flagBits, rules: rules)
    }
}

/// A profile checked and translated into libseccomp's terms, ready to compile.
struct LoweredSeccompProfile {
    struct Rule {
        /// How errors name the rule, such as `seccomp rule 3 ("clone")`.
        var label: String
        var names: [String]
        var action: UInt32
        /// Comparison lists each added as its own rule; one empty list for an unconditional rule.
        var alternatives: [[scmp_arg_cmp]]
    }

    var defaultAction: UInt32
    var flags: UInt32
    var rules: [Rule]
}

extension SeccompProfile.Action {
    /// libseccomp's value for the action, which is the kernel's `SECCOMP_RET_*` value with the
    /// error number or tracer value in the low 16 bits.
    ///
    /// - Parameters:
    ///   - errnoRet: The rule's `errnoRet`, allowed only for ``errno`` and ``trace``.
    ///   - label: How errors name the rule.
    fileprivate func value(errnoRet: UInt32?, in label: String) throws(KernelError) -> UInt32 {
        // SCMP_ACT_ERRNO(x) and SCMP_ACT_TRACE(x) are function-like macros Swift cannot import.
        let data: UInt32
        switch self {
        case .errno, .trace:
            data = errnoRet ?? UInt32(EPERM)
            guard data <= 0xFFFF else {
                throw KernelError(code: .invalidArgument, detail: "\(label): errnoRet \(data) does not fit in 16 bits")
            }
        case .notify:
            throw KernelError(code: .unsupported, detail: "\(label): \(self) is not supported")
        default:
            guard errnoRet == nil else {
                throw KernelError(
                    code: .invalidArgument,
                    detail: "\(label): errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
            }
            data = 0
        }
        switch self {
        case .kill, .killThread: return SCMP_ACT_KILL_THREAD
        case .killProcess: return SCMP_ACT_KILL_PROCESS
        case .trap: return SCMP_ACT_TRAP
        case .errno: return 0x0005_0000 | data
        case .trace: return 0x7FF0_0000 | data
        case .allow: return SCMP_ACT_ALLOW
        case .log: return SCMP_ACT_LOG
        default: throw KernelError(code: .invalidArgument, detail: "\(label): unknown action \"\(self)\"")
        }
    }
}

extension SeccompProfile.Operator {
    /// libseccomp's comparison, or `nil` for a name it does not have.
    fileprivate var comparison: scmp_compare? {
        switch self {
        case .notEqual: SCMP_CMP_NE
        case .lessThan: SCMP_CMP_LT
        case .lessThanOrEqual: SCMP_CMP_LE
        case .equal: SCMP_CMP_EQ
        case .greaterThanOrEqual: SCMP_CMP_GE
        case .greaterThan: SCMP_CMP_GT
        case .maskedEqual: SCMP_CMP_MASKED_EQ
        default: nil
        }
    }
}

extension SeccompProfile.Flag {
    /// The kernel's `SECCOMP_FILTER_FLAG_*` bit, or `nil` for a flag the runtime spec does not define.
    fileprivate var bit: UInt32? {
        switch self {
        case .threadSync: 1 << 0
        case .log: 1 << 1
        case .speculationAllowed: 1 << 2
        // Only meaningful with a notification listener, which Berth never creates, and the
        // kernel refuses it without one.
        case .waitKillableReceive: 0
        default: nil
        }
    }
}
