/// A seccomp filter in the OCI runtime-spec `linux.seccomp` format.
///
/// A profile lists rules that match system calls by name (and optionally by argument) and says
/// what the kernel does when a call matches: allow it, fail it with an error number, kill the
/// process, and so on. Calls that no rule matches get ``defaultAction``.
///
/// The JSON form uses the runtime spec's keys, so a profile written for runc or crun decodes as is.
/// ``init(json:capabilities:)`` also reads Docker's profile format, and
/// ``dockerDefault(capabilities:)`` gives Docker's default profile:
///
/// ```swift
/// let profile = SeccompProfile.dockerDefault(capabilities: Capability.dockerDefault)
/// let program = try profile.compile()   // classic BPF, ready for the spawner
/// ```
public struct SeccompProfile: Codable, Sendable, Hashable {
    /// What happens to a system call that no rule matches.
    public var defaultAction: Action
    /// The error number ``defaultAction`` returns when it is ``Action/errno``; `EPERM` when `nil`.
    public var defaultErrnoRet: UInt32?
    /// Architectures to filter besides the native one, such as ``Architecture/x86`` for 32-bit
    /// programs on an x86-64 machine. Calls from an architecture not listed kill the process.
    public var architectures: [Architecture]
    /// Flags for the `seccomp(2)` call that installs the filter.
    public var flags: [Flag]
    /// The rules that override ``defaultAction`` for the calls they match.
    public var syscalls: [Rule]

    /// Creates a profile.
    ///
    /// - Parameters:
    ///   - defaultAction: What happens to a system call that no rule matches.
    ///   - defaultErrnoRet: The error number for a default ``Action/errno``; `EPERM` when `nil`.
    ///   - architectures: Architectures to filter besides the native one.
    ///   - flags: Flags for the `seccomp(2)` call that installs the filter.
    ///   - syscalls: The rules.
    public init(
        defaultAction: Action, defaultErrnoRet: UInt32? = nil, architectures: [Architecture] = [],
        flags: [Flag] = [], syscalls: [Rule] = []
    ) {
        self.defaultAction = defaultAction
        self.defaultErrnoRet = defaultErrnoRet
        self.architectures = architectures
        self.flags = flags
        self.syscalls = syscalls
    }

    // `listenerPath` and `listenerMetadata` are left out: they only serve SCMP_ACT_NOTIFY, which
    // Berth does not support.
    enum CodingKeys: String, CodingKey {
        case defaultAction, defaultErrnoRet, architectures, flags, syscalls
    }

    /// Decodes a profile from the runtime spec's JSON form; absent lists are empty.
    ///
    /// - Parameter decoder: The decoder to read from.
    /// - Throws: `DecodingError` when a required key is missing or has the wrong type.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        defaultAction = try container.decode(Action.self, forKey: .defaultAction)
        defaultErrnoRet = try container.decodeIfPresent(UInt32.self, forKey: .defaultErrnoRet)
        architectures = try container.decodeIfPresent([Architecture].self, forKey: .architectures) ?? []
        flags = try container.decodeIfPresent([Flag].self, forKey: .flags) ?? []
        syscalls = try container.decodeIfPresent([Rule].self, forKey: .syscalls) ?? []
    }

    /// One rule: the system calls it matches and what happens to them.
    public struct Rule: Codable, Sendable, Hashable {
        /// The system calls' names, such as `"mount"`. Names unknown on the machine are skipped.
        public var names: [String]
        /// What happens to a matching call.
        public var action: Action
        /// The error number for ``Action/errno``, or the value passed to the tracer for
        /// ``Action/trace``; `EPERM` when `nil`.
        public var errnoRet: UInt32?
        /// Conditions on the call's arguments; all must hold for the rule to match. Several
        /// conditions on the same argument are instead separate rules, any of which may match
        /// (runc does the same).
        public var args: [Argument]

        /// Creates a rule.
        ///
        /// - Parameters:
        ///   - names: The system calls' names.
        ///   - action: What happens to a matching call.
        ///   - errnoRet: The error number for ``Action/errno`` or the tracer's value for
        ///     ``Action/trace``.
        ///   - args: Conditions on the call's arguments.
        public init(names: [String], action: Action, errnoRet: UInt32? = nil, args: [Argument] = []) {
            self.names = names
            self.action = action
            self.errnoRet = errnoRet
            self.args = args
        }

        enum CodingKeys: String, CodingKey {
            case names, action, errnoRet, args
        }

        /// Decodes a rule; absent `names` and `args` are empty.
        ///
        /// - Parameter decoder: The decoder to read from.
        /// - Throws: `DecodingError` when `action` is missing or a key has the wrong type.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            // Docker's format may use "name" instead; its decoder fills `names` from it.
            names = try container.decodeIfPresent([String].self, forKey: .names) ?? []
            action = try container.decode(Action.self, forKey: .action)
            errnoRet = try container.decodeIfPresent(UInt32.self, forKey: .errnoRet)
            args = try container.decodeIfPresent([Argument].self, forKey: .args) ?? []
        }
    }

    /// A condition on one argument of a system call.
    public struct Argument: Codable, Sendable, Hashable {
        /// Which argument, from 0 to 5.
        public var index: UInt32
        /// The value to compare with, or the mask for ``Operator/maskedEqual``.
        public var value: UInt64
        /// The value the masked argument must equal, for ``Operator/maskedEqual`` only.
        public var valueTwo: UInt64
        /// How the argument is compared.
        public var op: Operator

        /// Creates a condition.
        ///
        /// - Parameters:
        ///   - index: Which argument, from 0 to 5.
        ///   - value: The value to compare with, or the mask for ``Operator/maskedEqual``.
        ///   - valueTwo: The value the masked argument must equal, for ``Operator/maskedEqual``.
        ///   - op: How the argument is compared.
        public init(index: UInt32, value: UInt64, valueTwo: UInt64 = 0, op: Operator) {
            self.index = index
            self.value = value
            self.valueTwo = valueTwo
            self.op = op
        }

        enum CodingKeys: String, CodingKey {
            case index, value, valueTwo, op
        }

        /// Decodes a condition; an absent `valueTwo` is 0.
        ///
        /// - Parameter decoder: The decoder to read from.
        /// - Throws: `DecodingError` when a required key is missing or has the wrong type.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            index = try container.decode(UInt32.self, forKey: .index)
            value = try container.decode(UInt64.self, forKey: .value)
            valueTwo = try container.decodeIfPresent(UInt64.self, forKey: .valueTwo) ?? 0
            op = try container.decode(Operator.self, forKey: .op)
        }
    }

    /// What the kernel does with a matching system call, by its libseccomp name (`SCMP_ACT_…`).
    ///
    /// Any name decodes; ``SeccompProfile/compile()`` rejects the ones it does not know.
    public struct Action: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
        /// The libseccomp name, such as `SCMP_ACT_ALLOW`.
        public var rawValue: String

        /// Wraps a libseccomp action name.
        ///
        /// - Parameter rawValue: The name, such as `SCMP_ACT_ALLOW`.
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The name, as it appears in the JSON.
        public var description: String { rawValue }

        /// Kill the calling thread (`SCMP_ACT_KILL`, the same as ``killThread``).
        public static let kill = Action(rawValue: "SCMP_ACT_KILL")
        /// Kill the calling thread (`SCMP_ACT_KILL_THREAD`).
        public static let killThread = Action(rawValue: "SCMP_ACT_KILL_THREAD")
        /// Kill the whole process (`SCMP_ACT_KILL_PROCESS`).
        public static let killProcess = Action(rawValue: "SCMP_ACT_KILL_PROCESS")
        /// Send the thread `SIGSYS` (`SCMP_ACT_TRAP`).
        public static let trap = Action(rawValue: "SCMP_ACT_TRAP")
        /// Fail the call with the rule's error number (`SCMP_ACT_ERRNO`).
        public static let errno = Action(rawValue: "SCMP_ACT_ERRNO")
        /// Notify a `ptrace` tracer, or fail with `ENOSYS` when there is none (`SCMP_ACT_TRACE`).
        public static let trace = Action(rawValue: "SCMP_ACT_TRACE")
        /// Allow the call (`SCMP_ACT_ALLOW`).
        public static let allow = Action(rawValue: "SCMP_ACT_ALLOW")
        /// Allow the call and log it to the audit log (`SCMP_ACT_LOG`).
        public static let log = Action(rawValue: "SCMP_ACT_LOG")
        /// Ask a user-space supervisor (`SCMP_ACT_NOTIFY`); Berth does not support it.
        public static let notify = Action(rawValue: "SCMP_ACT_NOTIFY")
    }

    /// How an argument is compared, by its libseccomp name (`SCMP_CMP_…`).
    ///
    /// Any name decodes; ``SeccompProfile/compile()`` rejects the ones it does not know.
    public struct Operator: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
        /// The libseccomp name, such as `SCMP_CMP_EQ`.
        public var rawValue: String

        /// Wraps a libseccomp comparison name.
        ///
        /// - Parameter rawValue: The name, such as `SCMP_CMP_EQ`.
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The name, as it appears in the JSON.
        public var description: String { rawValue }

        /// The argument differs from the value (`SCMP_CMP_NE`).
        public static let notEqual = Operator(rawValue: "SCMP_CMP_NE")
        /// The argument is less than the value (`SCMP_CMP_LT`).
        public static let lessThan = Operator(rawValue: "SCMP_CMP_LT")
        /// The argument is at most the value (`SCMP_CMP_LE`).
        public static let lessThanOrEqual = Operator(rawValue: "SCMP_CMP_LE")
        /// The argument equals the value (`SCMP_CMP_EQ`).
        public static let equal = Operator(rawValue: "SCMP_CMP_EQ")
        /// The argument is at least the value (`SCMP_CMP_GE`).
        public static let greaterThanOrEqual = Operator(rawValue: "SCMP_CMP_GE")
        /// The argument is greater than the value (`SCMP_CMP_GT`).
        public static let greaterThan = Operator(rawValue: "SCMP_CMP_GT")
        /// The argument masked with `value` equals `valueTwo` (`SCMP_CMP_MASKED_EQ`).
        public static let maskedEqual = Operator(rawValue: "SCMP_CMP_MASKED_EQ")
    }

    /// A system-call architecture, by its libseccomp name (`SCMP_ARCH_…`).
    ///
    /// Names libseccomp does not know are skipped when the profile is compiled.
    public struct Architecture: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
        /// The libseccomp name, such as `SCMP_ARCH_X86_64`.
        public var rawValue: String

        /// Wraps a libseccomp architecture name.
        ///
        /// - Parameter rawValue: The name, such as `SCMP_ARCH_X86_64`.
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The name, as it appears in the JSON.
        public var description: String { rawValue }

        /// 64-bit x86 (`SCMP_ARCH_X86_64`).
        public static let x86_64 = Architecture(rawValue: "SCMP_ARCH_X86_64")
        /// 32-bit x86 (`SCMP_ARCH_X86`).
        public static let x86 = Architecture(rawValue: "SCMP_ARCH_X86")
        /// The x32 ABI: 64-bit x86 with 32-bit pointers (`SCMP_ARCH_X32`).
        public static let x32 = Architecture(rawValue: "SCMP_ARCH_X32")
        /// 64-bit Arm (`SCMP_ARCH_AARCH64`).
        public static let aarch64 = Architecture(rawValue: "SCMP_ARCH_AARCH64")
        /// 32-bit Arm (`SCMP_ARCH_ARM`).
        public static let arm = Architecture(rawValue: "SCMP_ARCH_ARM")
        /// 64-bit IBM Z (`SCMP_ARCH_S390X`).
        public static let s390x = Architecture(rawValue: "SCMP_ARCH_S390X")
        /// 31-bit IBM Z (`SCMP_ARCH_S390`).
        public static let s390 = Architecture(rawValue: "SCMP_ARCH_S390")
        /// 64-bit RISC-V (`SCMP_ARCH_RISCV64`).
        public static let riscv64 = Architecture(rawValue: "SCMP_ARCH_RISCV64")
        /// 64-bit little-endian POWER (`SCMP_ARCH_PPC64LE`).
        public static let ppc64le = Architecture(rawValue: "SCMP_ARCH_PPC64LE")
    }

    /// A flag for the `seccomp(2)` call that installs the filter, by its kernel name.
    ///
    /// Any name decodes; ``SeccompProfile/compile()`` rejects the ones it does not know.
    public struct Flag: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
        /// The kernel's name, such as `SECCOMP_FILTER_FLAG_LOG`.
        public var rawValue: String

        /// Wraps a kernel flag name.
        ///
        /// - Parameter rawValue: The name, such as `SECCOMP_FILTER_FLAG_LOG`.
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The name, as it appears in the JSON.
        public var description: String { rawValue }

        /// Apply the filter to every thread of the process (`SECCOMP_FILTER_FLAG_TSYNC`).
        public static let threadSync = Flag(rawValue: "SECCOMP_FILTER_FLAG_TSYNC")
        /// Log every action except ``Action/allow`` (`SECCOMP_FILTER_FLAG_LOG`).
        public static let log = Flag(rawValue: "SECCOMP_FILTER_FLAG_LOG")
        /// Keep the Speculative Store Bypass mitigation off (`SECCOMP_FILTER_FLAG_SPEC_ALLOW`).
        public static let speculationAllowed = Flag(rawValue: "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
        /// Wait killably for a notification reply (`SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`);
        /// accepted and ignored, since Berth does not support notification.
        public static let waitKillableReceive = Flag(rawValue: "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
    }
}
