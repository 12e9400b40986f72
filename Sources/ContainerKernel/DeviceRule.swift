import CSyscalls
import Glibc
import SystemSupport

/// One entry of a container's device allowlist, such as `c 1:3 rwm` for `/dev/null`.
///
/// A container's device rules (``CgroupResources/devices``) are an allowlist on top of "deny
/// everything": a device access succeeds only when one rule matches its type, major and minor
/// number and grants every access bit asked for. The same list gives the same answers under
/// cgroup v1 (`devices.allow`) and cgroup v2 (a `BPF_PROG_TYPE_CGROUP_DEVICE` program).
///
/// The rules govern creating (`mknod`), reading and writing *device nodes*; whether a node exists
/// in the container's `/dev` is a separate matter for the mount table.
public struct DeviceRule: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The kind of device a rule covers.
    public enum Kind: String, Sendable, Hashable, Codable {
        /// Character devices (`c`; the kernel's `DEVCG_DEV_CHAR`).
        case character = "c"
        /// Block devices (`b`; the kernel's `DEVCG_DEV_BLOCK`).
        case block = "b"
        /// Both kinds (`a`).
        case all = "a"
    }

    /// What a rule lets a process do with a matching device.
    ///
    /// The raw values are the kernel's `BPF_DEVCG_ACC_*` bits.
    public struct Access: OptionSet, Sendable, Hashable, Codable {
        /// The access bits.
        public var rawValue: UInt16

        /// Wraps access bits.
        ///
        /// - Parameter rawValue: A combination of the kernel's `BPF_DEVCG_ACC_*` bits.
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        /// Creating a device node with `mknod` (`m`; `BPF_DEVCG_ACC_MKNOD`).
        public static var mknod: Access { Access(rawValue: 1) }
        /// Opening a device node for reading (`r`; `BPF_DEVCG_ACC_READ`).
        public static var read: Access { Access(rawValue: 2) }
        /// Opening a device node for writing (`w`; `BPF_DEVCG_ACC_WRITE`).
        public static var write: Access { Access(rawValue: 4) }
        /// Reading, writing and creating (`rwm`).
        public static var all: Access { [.read, .write, .mknod] }
    }

    /// The kind of device the rule covers.
    public var kind: Kind
    /// The device's major number; `nil` matches every major number (`*`).
    public var major: UInt32?
    /// The device's minor number; `nil` matches every minor number (`*`).
    public var minor: UInt32?
    /// What the rule allows.
    public var access: Access

    /// Creates an allow rule.
    ///
    /// - Parameters:
    ///   - kind: The kind of device.
    ///   - major: The major number, or `nil` for any.
    ///   - minor: The minor number, or `nil` for any.
    ///   - access: What the rule allows.
    public init(_ kind: Kind, major: UInt32? = nil, minor: UInt32? = nil, access: Access) {
        self.kind = kind
        self.major = major
        self.minor = minor
        self.access = access
    }

    /// The rule in the kernel's `devices.allow` syntax, such as `c 136:* rwm`.
    public var description: String {
        var letters = ""
        if access.contains(.read) { letters += "r" }
        if access.contains(.write) { letters += "w" }
        if access.contains(.mknod) { letters += "m" }
        return "\(kind.rawValue) \(major.map(String.init) ?? "*"):\(minor.map(String.init) ?? "*") \(letters)"
    }

    /// Docker's default device allowlist, without `mknod` of block devices.
    ///
    /// Docker (moby's `oci/defaults.go` with runc's `AllowedDevices`) additionally allows
    /// `b *:* m`. Berth leaves it out, so `mknod` of any block device fails with `EPERM` in a
    /// container by default; add ``DeviceRule/init(_:major:minor:access:)`` with `.block` to grant it.
    /// `/dev/net/tun` (10:200) and `/dev/fuse` (10:229) are not allowed either.
    ///
    /// The list: `c *:* m`, then `rwm` on `/dev/null` (1:3), `/dev/zero` (1:5), `/dev/full` (1:7),
    /// `/dev/random` (1:8), `/dev/urandom` (1:9), `/dev/tty` (5:0), `/dev/console` (5:1),
    /// `/dev/ptmx` (5:2) and the pseudo-terminals `/dev/pts/*` (136:*).
    public static var dockerDefaults: [DeviceRule] {
        [
            DeviceRule(.character, access: .mknod),
            DeviceRule(.character, major: 1, minor: 3, access: .all),
            DeviceRule(.character, major: 1, minor: 5, access: .all),
            DeviceRule(.character, major: 1, minor: 7, access: .all),
            DeviceRule(.character, major: 1, minor: 8, access: .all),
            DeviceRule(.character, major: 1, minor: 9, access: .all),
            DeviceRule(.character, major: 5, minor: 0, access: .all),
            DeviceRule(.character, major: 5, minor: 1, access: .all),
            DeviceRule(.character, major: 5, minor: 2, access: .all),
            DeviceRule(.character, major: 136, access: .all),
        ]
    }

    /// Checks the numbers fit a Linux `dev_t` (12-bit major, 20-bit minor, `MINORBITS` in
    /// `include/linux/kdev_t.h`) and that the rule allows something.
    func validate() throws(KernelError) {
        if access.isEmpty || !Access.all.isSuperset(of: access) {
            throw KernelError(
                code: .invalidArgument, detail: "device rule \"\(self)\": access must be a combination of r, w and m")
        }
        if let major, major >= 1 << 12 {
            throw KernelError(code: .invalidArgument, detail: "device rule \"\(self)\": major number above 4095")
        }
        if let minor, minor >= 1 << 20 {
            throw KernelError(code: .invalidArgument, detail: "device rule \"\(self)\": minor number above 1048575")
        }
        if kind == .all && (major != nil || minor != nil) {
            throw KernelError(code: .invalidArgument, detail: "device rule \"\(self)\": type a takes no device numbers")
        }
    }
}

/// The cgroup v2 form of a device allowlist: an eBPF program of type
/// `BPF_PROG_TYPE_CGROUP_DEVICE`.
///
/// cgroup v2 has no `devices.allow` file; the kernel instead runs the programs attached to the
/// cgroup and its ancestors (`Documentation/admin-guide/cgroup-v2.rst`, "Device controller") and
/// allows an access only if every one returns 1. runc (`libcontainer/cgroups/devices/devicefilter`)
/// and crun generate the same kind of program.
enum DeviceFilter {
    /// Builds the program: one block per rule that returns 1 on a match, then "return 0".
    ///
    /// The context is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`,
    /// with the device type (`BPF_DEVCG_DEV_BLOCK` 1, `BPF_DEVCG_DEV_CHAR` 2) in the low 16 bits
    /// of `access_type` and the requested `BPF_DEVCG_ACC_*` bits in the high 16. The prologue
    /// loads type into r2, access into r3, major into r4 and minor into r5; r1 (the context
    /// pointer) is free after that and serves as scratch. Every rule allows, so their order does
    /// not matter.
    ///
    /// - Parameter rules: Validated rules (``DeviceRule/validate()``), so numbers fit in `imm`.
    /// - Returns: The instructions.
    static func program(for rules: [DeviceRule]) -> [bpf_insn] {
        var program: [bpf_insn] = [
            load(into: 2, offset: 0),
            alu32(BPF_AND, into: 2, immediate: 0xFFFF),
            load(into: 3, offset: 0),
            alu32(BPF_RSH, into: 3, immediate: 16),
            load(into: 4, offset: 4),
            load(into: 5, offset: 8),
        ]
        for rule in rules {
            // Each check is a "jump to the next rule if it does not match"; the targets are
            // patched once the block's length is known.
            var checks: [bpf_insn] = []
            switch rule.kind {
            case .character: checks.append(jumpIfNotEqual(2, immediate: 2))
            case .block: checks.append(jumpIfNotEqual(2, immediate: 1))
            case .all: break
            }
            if rule.access != .all {
                // The request must be a subset of the rule: (requested & allowed) == requested.
                checks.append(bpf_insn(code: UInt8(BPF_ALU | BPF_MOV | BPF_X), dst_reg: 1, src_reg: 3, off: 0, imm: 0))
                checks.append(alu32(BPF_AND, into: 1, immediate: Int32(rule.access.rawValue)))
                checks.append(bpf_insn(code: UInt8(BPF_JMP | BPF_JNE | BPF_X), dst_reg: 1, src_reg: 3, off: 0, imm: 0))
            }
            if let major = rule.major { checks.append(jumpIfNotEqual(4, immediate: Int32(major))) }
            if let minor = rule.minor { checks.append(jumpIfNotEqual(5, immediate: Int32(minor))) }
            let blockLength = checks.count + 2
            for index in checks.indices where checks[index].code & 0x07 == UInt8(BPF_JMP) {
                checks[index].off = Int16(blockLength - index - 1)
            }
            program += checks + returning(1)
        }
        return program + returning(0)
    }

    /// Loads the program for `rules` and attaches it to a cgroup v2 directory.
    ///
    /// - Parameters:
    ///   - rules: The allowlist.
    ///   - directory: An open descriptor of the cgroup directory (`O_PATH` is enough).
    ///   - path: The directory's path, for error messages.
    /// - Returns: The program's descriptor; the caller owns it (it is needed to detach).
    /// - Throws: ``KernelError`` when the kernel refuses to load or attach the program.
    static func attach(_ rules: [DeviceRule], to directory: Int32, path: String) throws(KernelError) -> Int32 {
        let program = Self.program(for: rules)
        // The license only gates GPL-only helpers, which this program does not call.
        let fd = try KernelError.from(try sys("load device eBPF program for \(path)") {
            program.withUnsafeBufferPointer { ck_bpf_load_cgroup_device($0.baseAddress, UInt32($0.count), "Apache") }
        })
        do throws(KernelError) {
            _ = try KernelError.from(try sys("attach device eBPF program to \(path)") { ck_bpf_attach_cgroup_device(directory, fd) })
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Detaches a program that ``attach(_:to:path:)`` attached, and closes its descriptor.
    ///
    /// - Parameters:
    ///   - program: The program's descriptor.
    ///   - directory: An open descriptor of the cgroup directory.
    ///   - path: The directory's path, for error messages.
    /// - Throws: ``KernelError`` when the kernel refuses to detach it.
    static func detach(_ program: Int32, from directory: Int32, path: String) throws(KernelError) {
        defer { close(program) }
        _ = try KernelError.from(try sys("detach device eBPF program from \(path)") { ck_bpf_detach_cgroup_device(directory, program) })
    }

    /// `dst = *(u32 *)(r1 + offset)`: a field of `struct bpf_cgroup_dev_ctx`.
    private static func load(into register: UInt8, offset: Int16) -> bpf_insn {
        bpf_insn(code: UInt8(BPF_LDX | BPF_MEM | BPF_W), dst_reg: register, src_reg: 1, off: offset, imm: 0)
    }

    /// A 32-bit ALU operation with an immediate operand.
    private static func alu32(_ operation: Int32, into register: UInt8, immediate: Int32) -> bpf_insn {
        bpf_insn(code: UInt8(BPF_ALU | operation | BPF_K), dst_reg: register, src_reg: 0, off: 0, imm: immediate)
    }

    /// `if dst != immediate goto +off`, with the offset patched by the caller.
    private static func jumpIfNotEqual(_ register: UInt8, immediate: Int32) -> bpf_insn {
        bpf_insn(code: UInt8(BPF_JMP | BPF_JNE | BPF_K), dst_reg: register, src_reg: 0, off: 0, imm: immediate)
    }

    /// `r0 = verdict; exit`.
    private static func returning(_ verdict: Int32) -> [bpf_insn] {
        [
            bpf_insn(code: UInt8(BPF_ALU64 | BPF_MOV | BPF_K), dst_reg: 0, src_reg: 0, off: 0, imm: verdict),
            bpf_insn(code: UInt8(BPF_JMP | BPF_EXIT), dst_reg: 0, src_reg: 0, off: 0, imm: 0),
        ]
    }
}
