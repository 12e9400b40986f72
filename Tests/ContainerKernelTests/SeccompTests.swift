// Seccomp profiles: parsing (runtime-spec and Docker formats), Docker's default profile, and
// compiling with libseccomp. Nothing here loads a filter into the test process; the spawner's
// tests install programs in container children.

import FoundationEssentials
import Testing

@testable import ContainerKernel

@Suite("Seccomp")
struct SeccompTests {
    private func parse(_ json: String, capabilities: Set<Capability> = Capability.dockerDefault) throws
        -> SeccompProfile
    {
        try SeccompProfile(json: Array(json.utf8), capabilities: capabilities)
    }

    private func allowed(_ profile: SeccompProfile, unconditionally name: String) -> Bool {
        profile.syscalls.contains { $0.action == .allow && $0.args.isEmpty && $0.names.contains(name) }
    }

    @Test func ociProfileParsesWithSpecKeys() throws {
        let profile = try parse(
            """
            {
              "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
              "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
              "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
              "listenerPath": "/run/ignored.sock",
              "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}
              ]
            }
            """)
        #expect(profile.defaultAction == .errno)
        #expect(profile.defaultErrnoRet == 38)
        #expect(profile.architectures == [.x86_64, .x86])
        #expect(profile.flags == [.log, .speculationAllowed])
        #expect(
            profile.syscalls == [
                .init(names: ["read", "write"], action: .allow),
                .init(names: ["kill"], action: .errno, errnoRet: 13),
                .init(
                    names: ["personality"], action: .allow,
                    args: [
                        .init(index: 0, value: 0xffff_ffff, op: .equal),
                        .init(index: 1, value: 255, valueTwo: 8, op: .maskedEqual),
                    ]),
            ])
        let program = try profile.compile()
        #expect(program.flags == 1 << 1 | 1 << 2)
        #expect(program.instructionCount > 0)
    }

    @Test func profileRoundTripsThroughItsJSON() throws {
        let profile = SeccompProfile.dockerDefault(capabilities: Capability.dockerDefault)
        let json = try JSONEncoder().encode(profile)
        #expect(try SeccompProfile(json: Array(json)) == profile)
        #expect(try JSONDecoder().decode(SeccompProfile.self, from: json) == profile)
    }

    static let dockerFormat = """
        {
          "defaultAction": "SCMP_ACT_ERRNO",
          "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
          ],
          "syscalls": [
            {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount", "unshare"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["kcmp"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["sys_admin", "CAP_SYS_PTRACE"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["futuristic"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "999.0"}},
            {"names": ["legacy"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "3.0"}}
          ]
        }
        """

    static let dockerFormatRows: [(Set<Capability>, [String])] = [
        ([], ["getpid", "clone", "ptrace"]),
        ([.sysAdmin], ["getpid", "mount", "unshare", "ptrace"]),
        ([.sysAdmin, .sysPtrace], ["getpid", "mount", "unshare", "kcmp", "ptrace"]),
    ]

    @Test(arguments: dockerFormatRows)
    func dockerFormatResolvesConditionsForTheCapabilities(capabilities: Set<Capability>, names: [String]) throws {
        let profile = try parse(Self.dockerFormat, capabilities: capabilities)
        var expected = names
        #if arch(x86_64)
            #expect(profile.architectures == [.x86_64, .x86, .x32])
            expected.insert("arch_prctl", at: expected.firstIndex(of: "ptrace") ?? expected.endIndex)
        #elseif arch(arm64)
            #expect(profile.architectures == [.aarch64, .arm])
        #endif
        #expect(profile.syscalls.flatMap(\.names) == expected)
    }

    static let malformed: [(String, String)] = [
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "SCMP_ARCH_X86_64"}], "architectures": ["SCMP_ARCH_X86"]}"#,
            "archMap"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#,
            "syscalls[0].name"
        ),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]}"#,
            "syscalls[0].includes.minKernel"
        ),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["a"]}]}"#, "syscalls[0].action"),
        (
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": "1", "op": "SCMP_CMP_EQ"}]}]}"#,
            "syscalls[0].args[0].value"
        ),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "#, "not valid JSON"),
    ]

    @Test(arguments: malformed)
    func malformedJSONIsAnInvalidArgumentNamingThePath(json: String, named: String) {
        let error = #expect(throws: KernelError.self) { try parse(json) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.detail.hasPrefix("seccomp profile: ") == true)
        #expect(error?.detail.contains(named) == true, "\(error?.detail ?? "")")
    }

    @Test func dockerDefaultCompilesToAnInstallableProgram() throws {
        for capabilities in [Capability.dockerDefault, [], Capability.all] {
            let program = try SeccompProfile.dockerDefault(capabilities: capabilities).compile()
            #expect(program.bytes.count % 8 == 0)
            #expect(program.instructionCount > 100)
            #expect(program.instructionCount <= 4096, "over the kernel's BPF_MAXINSNS")
            #expect(program.flags == 0)
            // Every libseccomp filter starts by loading seccomp_data.arch: BPF_LD|BPF_W|BPF_ABS, k = 4.
            #expect(program.bytes[0] == 0x20 && program.bytes[1] == 0x00)
            #expect(program.bytes[4..<8].elementsEqual([4, 0, 0, 0]))
        }
    }

    @Test func dockerDefaultFailsUnmatchedCallsWithEPERMAndFiltersX86Too() {
        let profile = SeccompProfile.dockerDefault(capabilities: Capability.dockerDefault)
        #expect(profile.defaultAction == .errno)
        #expect(profile.defaultErrnoRet == 1)
        #if arch(x86_64)
            #expect(profile.architectures == [.x86_64, .x86, .x32])
            #expect(allowed(profile, unconditionally: "arch_prctl"))
            #expect(allowed(profile, unconditionally: "modify_ldt"))
        #endif
        #expect(allowed(profile, unconditionally: "read"))
        #expect(allowed(profile, unconditionally: "chroot"), "Docker's default capabilities include CAP_SYS_CHROOT")
        #expect(!allowed(profile, unconditionally: "socket"), "socket is allowed per address family")
        #expect(!profile.syscalls.contains { $0.names.contains("io_uring_setup") })
        let personalities = profile.syscalls.filter { $0.names == ["personality"] }.flatMap(\.args).map(\.value)
        #expect(personalities == [0, 8, 0x20000, 0x20008, 0xffff_ffff])
        let families = profile.syscalls.filter { $0.names == ["socket"] }.flatMap(\.args)
        #expect(families.first == .init(index: 0, value: 12, op: .lessThan))
        #expect(!families.contains { $0.value == 38 || $0.value == 40 }, "AF_ALG and AF_VSOCK stay blocked")
    }

    @Test func capSysAdminAllowsMountAndUnshareAndUnfiltersClone() {
        let without = SeccompProfile.dockerDefault(capabilities: Capability.dockerDefault)
        for name in ["mount", "umount2", "unshare", "setns", "clone", "clone3"] {
            #expect(!allowed(without, unconditionally: name), "\(name) without CAP_SYS_ADMIN")
        }
        #expect(
            without.syscalls.contains(
                .init(names: ["clone"], action: .allow, args: [.init(index: 0, value: 0x7E02_0000, op: .maskedEqual)])))
        #expect(without.syscalls.contains(.init(names: ["clone3"], action: .errno, errnoRet: 38)))

        let with = SeccompProfile.dockerDefault(capabilities: Capability.dockerDefault.union([.sysAdmin]))
        for name in ["mount", "umount2", "unshare", "setns", "clone", "clone3"] {
            #expect(allowed(with, unconditionally: name), "\(name) with CAP_SYS_ADMIN")
        }
        #expect(!with.syscalls.contains { $0.names == ["clone"] && !$0.args.isEmpty })
        #expect(!with.syscalls.contains { $0.action == .errno })
    }

    static let capabilityCalls: [(Capability, String)] = [
        (.sysPtrace, "kcmp"), (.sysModule, "init_module"), (.sysBoot, "reboot"),
        (Capability(rawValue: 25), "settimeofday"), (Capability(rawValue: 20), "acct"),
    ]

    @Test(arguments: capabilityCalls)
    func capabilitiesAllowTheirCalls(capability: Capability, call: String) {
        #expect(!allowed(SeccompProfile.dockerDefault(capabilities: Capability.dockerDefault), unconditionally: call))
        #expect(allowed(SeccompProfile.dockerDefault(capabilities: [capability]), unconditionally: call))
    }

    @Test func defaultTableNamesOnlyCapabilitiesLibcapKnows() throws {
        let rules = DockerProfile.moby.rules
        for name in Set(rules.flatMap { $0.includes.caps + $0.excludes.caps }) {
            #expect(try Capability(named: name).name == name)
        }
    }

    static let badRules: [(SeccompProfile.Rule, KernelError.Code, String)] = [
        (.init(names: ["mount"], action: .init(rawValue: "SCMP_ACT_FROB")), .invalidArgument, "unknown action"),
        (
            .init(
                names: ["mount"], action: .allow,
                args: [.init(index: 0, value: 1, op: .init(rawValue: "SCMP_CMP_ABOUT"))]),
            .invalidArgument, "unknown operator"
        ),
        (
            .init(names: ["mount"], action: .allow, args: [.init(index: 6, value: 1, op: .equal)]), .invalidArgument,
            "index 6"
        ),
        (.init(names: ["mount"], action: .allow, errnoRet: 1), .invalidArgument, "errnoRet"),
        (.init(names: ["mount"], action: .errno, errnoRet: 70_000), .invalidArgument, "16 bits"),
        (.init(names: ["mount"], action: .notify), .unsupported, "SCMP_ACT_NOTIFY"),
    ]

    @Test(arguments: badRules)
    func badRuleIsATypedErrorNamingTheRule(rule: SeccompProfile.Rule, code: KernelError.Code, words: String) throws {
        let profile = SeccompProfile(
            defaultAction: .errno, syscalls: [.init(names: ["read"], action: .allow), rule])
        let error = #expect(throws: KernelError.self) { try profile.compile() }
        #expect(error?.code == code)
        #expect(error?.detail.hasPrefix(#"seccomp rule 1 ("mount"): "#) == true, "\(error?.detail ?? "")")
        #expect(error?.detail.contains(words) == true, "\(error?.detail ?? "")")

        // Reading the same profile as JSON fails the same way, before anything is compiled.
        let json = try JSONEncoder().encode(profile)
        let parseError = #expect(throws: KernelError.self) { try SeccompProfile(json: Array(json)) }
        #expect(parseError == error)
    }

    @Test func unknownFlagIsAnInvalidArgument() {
        let profile = SeccompProfile(defaultAction: .allow, flags: [.init(rawValue: "SECCOMP_FILTER_FLAG_MAGIC")])
        let error = #expect(throws: KernelError.self) { try profile.compile() }
        #expect(error?.code == .invalidArgument)
        #expect(error?.detail == #"seccomp profile: unknown flag "SECCOMP_FILTER_FLAG_MAGIC""#)
    }

    @Test func unknownSyscallNamesAndArchitecturesAreSkipped() throws {
        let plain = SeccompProfile(defaultAction: .errno, syscalls: [.init(names: ["getpid"], action: .allow)])
        let extra = SeccompProfile(
            defaultAction: .errno, architectures: [.init(rawValue: "SCMP_ARCH_PDP11")],
            syscalls: [
                .init(names: ["getpid", "no_such_syscall"], action: .allow),
                .init(names: ["also_not_a_syscall"], action: .killProcess),
            ])
        #expect(try extra.compile() == plain.compile())
    }

    @Test func ruleWithTheDefaultActionIsLeftOut() throws {
        let plain = SeccompProfile(defaultAction: .errno, syscalls: [.init(names: ["getpid"], action: .allow)])
        var redundant = plain
        redundant.syscalls.append(.init(names: ["mount"], action: .errno, errnoRet: 1))
        #expect(try redundant.compile() == plain.compile())
    }

    @Test func repeatedConditionsOnOneArgumentAreAlternatives() throws {
        // libseccomp refuses two comparisons of one argument in a rule; like runc, each becomes its own rule.
        let twice = SeccompProfile(
            defaultAction: .errno,
            syscalls: [
                .init(
                    names: ["socket"], action: .allow,
                    args: [.init(index: 0, value: 1, op: .equal), .init(index: 0, value: 2, op: .equal)])
            ])
        let split = SeccompProfile(
            defaultAction: .errno,
            syscalls: [
                .init(names: ["socket"], action: .allow, args: [.init(index: 0, value: 1, op: .equal)]),
                .init(names: ["socket"], action: .allow, args: [.init(index: 0, value: 2, op: .equal)]),
            ])
        #expect(try twice.compile() == split.compile())
    }
}
