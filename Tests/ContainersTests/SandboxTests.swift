import Containers
import FoundationEssentials
import Glibc
import Testing
import TestSupport

/// The sandbox controls of a configuration, each proven from inside a running container (its
/// main process, pid 1, read through /proc), and the configurations they refuse: refused
/// before anything is made, with a typed error, leaving nothing behind.
@Suite(.serialized)
struct SandboxTests {
    /// A running container of `configuration` (pid 1 sleeps) for `body`, then removed; nothing
    /// may leak.
    func withSandbox(_ configuration: ContainerConfiguration, _ body: (Container) async throws -> Void) async throws {
        try await withContainer({ try await $0.run(configuration) }) { container, _ in try await body(container) }
    }

    /// What `script` prints in the container, by an exec.
    func shell(_ container: Container, _ script: String) async throws -> String {
        let result = try await container.exec(["sh", "-c", script])
        #expect(result.status == .exited(0), "\(script): \(result.standardError)")
        return result.standardOutput
    }

    @Test func resourceLimitsSysctlsOOMScoreAndCapabilitiesApplyToTheMainProcess() async throws {
        let configuration = busybox(["/bin/probe", "sleep", "30"]) {
            $0.resourceLimits = [ResourceLimit(.openFiles, soft: 321, hard: 654),
                                 ResourceLimit(.fileSize, soft: 1 << 20, hard: 1 << 20)]
            $0.sysctls = ["net.ipv4.ip_unprivileged_port_start": "123", "kernel.msgmax": "12345"]
            $0.oomScoreAdjustment = 234
            $0.capabilitiesDropped = Capability.all
            $0.capabilitiesAdded = [.netBindService, .kill]
        }
        try await withSandbox(configuration) { container in
            let limits = try await shell(container, "grep -E 'Max (open files|file size)' /proc/1/limits")
            let words = limits.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
            #expect(words.map { Array($0.suffix(3)) } == [["1048576", "1048576", "bytes"], ["321", "654", "files"]], "\(limits)")
            #expect(try await shell(container, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/msgmax")
                    == "123\n12345\n")
            #expect(try await shell(container, "cat /proc/1/oom_score_adj") == "234\n")
            // Only CAP_KILL (5) and CAP_NET_BIND_SERVICE (10), in every set that counts.
            #expect(try await shell(container, "grep -E '^Cap(Eff|Prm|Bnd)' /proc/1/status | cut -f2")
                    == String(repeating: "0000000000000420\n", count: 3))
        }
        // The host's own values are untouched.
        #expect(try contents("/proc/self/oom_score_adj") != "234\n")
    }

    @Test func aUserNamespaceMakesRootAnUnprivilegedHostIDAndKeepsTheImagesOwners() async throws {
        let configuration = busybox(["/bin/probe", "sleep", "30"]) {
            $0.userNamespace = UserNamespaceRemapping(hostID: 100_000)
        }
        try await withSandbox(configuration) { container in
            let maps = try await shell(container, "cat /proc/1/uid_map /proc/1/gid_map /proc/self/uid_map")
            let lines = maps.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
            #expect(lines == Array(repeating: ["0", "100000", "65536"], count: 3), "\(maps)")
            // The image's files belong to root inside (not to nobody), and root can write them.
            #expect(try await shell(container, "stat -c '%u:%g %n' /etc/passwd /bin/sh /; id -u")
                    == "0:0 /etc/passwd\n0:0 /bin/sh\n0:0 /\n0\n")
            #expect(try await shell(container, "echo extra >> /etc/passwd && tail -n1 /etc/passwd") == "extra\n")
            // On the host, the process and the files are host id 100000's.
            let pid = try #require(container.state.pid)
            let status = try contents("/proc/\(pid)/status")
            #expect(status.split(separator: "\n").first { $0.hasPrefix("Uid:") }?.split(separator: "\t").dropFirst().first == "100000")
            var st = stat()
            #expect(lstat(container.directory + "/rootfs/etc/passwd", &st) == 0 && st.st_uid == 100_000 && st.st_gid == 100_000)
            // The owners come from the store's id-shifted copy of the layer, shared read-only:
            // the container's own upper directory holds what it wrote, not a copy of the image.
            #expect(lstat(container.directory + "/upper/etc/passwd", &st) == 0)
            #expect(lstat(container.directory + "/upper/bin/sh", &st) != 0 && errno == ENOENT)
            let runtime = try await TestRuntime.shared()
            let shifted = runtime.layers.layers().map { String($0.path.dropLast("/diff".count)) + "/shifted" }
            let copies = shifted.filter { access($0 + "/100000-65536", F_OK) == 0 }
            #expect(!copies.isEmpty)
            for directory in copies {
                // Root's alone on the host: the copies' owners are host ids someone may hold.
                #expect(lstat(directory, &st) == 0 && st.st_uid == 0 && st.st_mode & 0o777 == 0o700)
                #expect(lstat(directory + "/100000-65536", &st) == 0 && st.st_uid == 100_000)
                if let passwd = try? contents(directory + "/100000-65536/etc/passwd") { #expect(!passwd.contains("extra")) }
            }
            // Another container with the same mapping shares the copy and sees none of the
            // first one's write.
            try await withSandbox(configuration) { other in
                let seen = try await shell(other, "stat -c '%u:%g' /bin/sh; grep -c extra /etc/passwd || true")
                #expect(seen == "0:0\n0\n")
            }
        }
    }

    @Test func theProcessSpecHookEditsTheMainProcessOnly() async throws {
        let configuration = busybox(["/bin/probe", "sleep", "30"]) {
            $0.processSpecHook = { spec in
                spec.environment.append("HOOKED=yes")
                spec.umask = 0o077
            }
        }
        try await withSandbox(configuration) { container in
            let main = try await shell(container, "tr '\\0' '\\n' < /proc/1/environ | grep HOOKED; grep Umask /proc/1/status | cut -f2")
            #expect(main == "HOOKED=yes\n0077\n")
            let exec = try await shell(container, "echo ${HOOKED:-none}")
            #expect(exec == "none\n")
        }
    }

    @Test func aThrowingHookFailsTheStartAndLeavesNothing() async throws {
        struct Refused: Error {}
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let error = await #expect(throws: ContainerError.self) {
            _ = try await runtime.run(busybox(["/bin/true"]) { $0.processSpecHook = { _ in throw Refused() } })
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.underlying is Refused)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test func theUntrustedPresetIsLockedDown() async throws {
        try await withSandbox(.untrusted(image: "busybox", command: ["/bin/probe", "sleep", "30"])) { container in
            let status = try await shell(container, "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/1/status | cut -f2")
            #expect(status == "0000000000000000\n0000000000000000\n1\n")
            let map = try await shell(container, "cat /proc/1/uid_map")
            #expect(map.split(whereSeparator: \.isWhitespace) == ["0", "100000", "65536"], "\(map)")
            #expect(try await shell(container, "ls /sys/class/net") == "lo\n")
            #expect(try await shell(container, "touch /tmp/ok && echo ok; touch /etc/no 2>/dev/null || echo refused")
                    == "ok\nrefused\n")
            let stats = try container.stats()
            #expect(stats.cgroup.pidsLimit == 64 && stats.cgroup.memoryLimit == 256 << 20, "\(stats)")
        }
    }

    @Test func invalidSandboxSettingsAreTypedErrorsAndLeaveNothing() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let refused: [(String, (inout ContainerConfiguration) -> Void)] = [
            ("host-wide sysctl", { $0.sysctls = ["vm.overcommit_memory": "1"] }),
            ("hostname sysctl", { $0.sysctls = ["kernel.hostname": "x"] }),
            ("path in a sysctl", { $0.sysctls = ["net.ipv4/../../kernel.core_pattern": "x"] }),
            ("net sysctl on the host network", { $0.network = .host; $0.sysctls = ["net.ipv4.ip_forward": "1"] }),
            ("range holding host root", { $0.userNamespace = UserNamespaceRemapping(hostID: 0) }),
            ("range overlapping the container's ids", { $0.userNamespace = UserNamespaceRemapping(hostID: 1000) }),
            ("empty range", { $0.userNamespace = UserNamespaceRemapping(hostID: 100_000, size: 0) }),
            ("range past the last id", { $0.userNamespace = UserNamespaceRemapping(hostID: 4_294_950_000) }),
            ("soft limit above hard", { $0.resourceLimits = [ResourceLimit(.openFiles, soft: 10, hard: 5)] }),
            ("OOM score out of range", { $0.oomScoreAdjustment = 1001 }),
        ]
        for (what, change) in refused {
            let name = "refused-\(getpid())"
            let configuration = busybox(["/bin/true"]) {
                change(&$0)
                $0.name = name
            }
            #expect(throws: ContainerError.self, "\(what)") { try configuration.validate() }
            let error = await #expect(throws: ContainerError.self, "\(what)") { _ = try await runtime.run(configuration) }
            #expect(error?.code == .invalidArgument, "\(what)")
            #expect(!runtime.list(all: true).contains { $0.name == name }, "\(what)")
        }
        // Namespaced ones pass.
        try busybox(["/bin/true"]) {
            $0.sysctls = ["net.core.somaxconn": "1024", "kernel.shmmax": "1", "fs.mqueue.msg_max": "20", "kernel.sem": "1 2 3 4"]
        }.validate()

        // Capabilities are typed: an unknown name never becomes one.
        let unknown = #expect(throws: KernelError.self) { try Capability(named: "CAP_WIZARD") }
        #expect(unknown?.code == .invalidArgument)
        #expect(throws: KernelError.self) { try Capability.parsing(["net_admin", "wizard"]) }
        #expect(try Capability.parsing(["net_admin", "CAP_KILL"]) == [.netAdmin, .kill])
        #expect(try Capability.parsing(["all"]) == Capability.all)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(ContainerConfiguration.self,
                                     from: Data(#"{"image":"busybox","capabilitiesAdded":["WIZARD"]}"#.utf8))
        }
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test func theSandboxFieldsAreStoredAndLegacyCapabilityNamesStillLoad() throws {
        var configuration = busybox(["true"]) {
            $0.capabilitiesAdded = [.netAdmin]
            $0.capabilitiesDropped = [.chown]
            $0.resourceLimits = [ResourceLimit(.processes, soft: 10, hard: 20)]
            $0.sysctls = ["kernel.msgmax": "100"]
            $0.oomScoreAdjustment = -5
            $0.userNamespace = UserNamespaceRemapping(hostID: 200_000, size: 1000)
        }
        configuration.processSpecHook = { _ in }
        let decoded = try JSONDecoder().decode(ContainerConfiguration.self, from: try JSONEncoder().encode(configuration))
        #expect(decoded.capabilitiesAdded == [.netAdmin] && decoded.capabilitiesDropped == [.chown])
        #expect(decoded.resourceLimits == configuration.resourceLimits && decoded.sysctls == configuration.sysctls)
        #expect(decoded.oomScoreAdjustment == -5 && decoded.userNamespace == configuration.userNamespace)
        #expect(decoded.processSpecHook == nil)
        let legacy = try JSONDecoder().decode(ContainerConfiguration.self, from: Data(
            #"{"image":"busybox","capabilitiesAdded":["net_admin"],"capabilitiesDropped":["ALL"]}"#.utf8))
        #expect(legacy.capabilitiesAdded == [.netAdmin] && legacy.capabilitiesDropped == Capability.all)
    }
}
