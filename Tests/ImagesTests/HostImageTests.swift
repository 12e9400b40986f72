import Foundation
import Images
import Layers
import Testing
import TestSupport

/// Images made from the host's own programs: the shared-library closure read from ELF headers,
/// checked against `ldd`, its typed errors, and an image whose program runs.
@Suite(.serialized)
struct HostImageTests {
    /// The files `ldd` says `program` loads, with symlinks resolved (the test's oracle).
    func lddFiles(_ program: String) throws -> Set<String> {
        let result = try run(["ldd", program])
        #expect(result.status == 0, "\(result.output)")
        let paths = result.output.split(separator: "\n").compactMap { line -> String? in
            let words = line.split { $0 == " " || $0 == "\t" }
            if let arrow = words.firstIndex(of: "=>"), arrow + 1 < words.count { return String(words[arrow + 1]) }
            return words.first.map(String.init).flatMap { $0.hasPrefix("/") ? $0 : nil }
        }
        return Set((paths + [program]).map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path })
    }

    @Test(arguments: ["/bin/sh", "/usr/lib/postgresql/15/bin/postgres", "/usr/bin/redis-server", "/usr/sbin/nginx"])
    func theClosureIsWhatLddFinds(program: String) throws {
        let closure = try SharedLibraryResolver().closure(of: [program])
        #expect(closure.first == program)
        let found = Set(closure.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path })
        let expected = try lddFiles(program)
        #expect(found == expected, "only found: \(found.subtracting(expected)), only ldd: \(expected.subtracting(found))")
    }

    @Test func aMissingProgramANonELFFileAndAMissingLibraryAreTypedErrors() throws {
        let resolver = try SharedLibraryResolver()
        #expect { try resolver.closure(of: ["/nonexistent/program"]) } throws: { ($0 as? ImageError)?.code == .notFound }
        #expect { try resolver.closure(of: ["/etc/passwd"]) } throws: { ($0 as? ImageError)?.code == .invalidContent }

        // A program that needs libgone.so, which is then removed, and libhere.so, found
        // through its DT_RUNPATH of $ORIGIN/lib.
        let scratch = try TemporaryDirectory(prefix: "elf")
        defer { try? scratch.remove() }
        let dir = scratch.path
        try "int gone(void) { return 1; }\n".write(toFile: dir + "/gone.c", atomically: true, encoding: .utf8)
        try "int here(void) { return 2; }\n".write(toFile: dir + "/here.c", atomically: true, encoding: .utf8)
        try "int gone(void); int here(void); int main(void) { return gone() + here(); }\n"
            .write(toFile: dir + "/main.c", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/lib", withIntermediateDirectories: true)
        for (name, output) in [("gone", dir + "/libgone.so"), ("here", dir + "/lib/libhere.so")] {
            #expect(try run(["gcc", "-shared", "-fPIC", "-o", output, "\(dir)/\(name).c"]).status == 0)
        }
        let built = try run(["gcc", "-o", dir + "/main", dir + "/main.c", "-L" + dir, "-L" + dir + "/lib", "-lgone", "-lhere",
                             "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib"])
        #expect(built.status == 0, "\(built.output)")
        // libgone.so is found only where a configuration lists the test's directory.
        #expect { try resolver.closure(of: [dir + "/main"]) } throws: { error in
            let error = error as? ImageError
            return error?.code == .notFound && error?.detail.contains("libgone.so, needed by \(dir)/main") == true
        }
        try "# a comment\ninclude conf.d/*.conf\n".write(toFile: dir + "/ld.so.conf", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/conf.d", withIntermediateDirectories: true)
        try "\(dir)\n".write(toFile: dir + "/conf.d/test.conf", atomically: true, encoding: .utf8)
        let configured = try SharedLibraryResolver(configuration: dir + "/ld.so.conf")
        #expect(configured.configuredDirectories == [dir])
        let closure = try configured.closure(of: [dir + "/main"])
        #expect(closure.contains(dir + "/libgone.so") && closure.contains(dir + "/lib/libhere.so"))
    }

    @Test func anImageOfHostProgramsRunsThemInItsOwnRoot() async throws {
        let scratch = try TemporaryDirectory(prefix: "host-image")
        defer { try? scratch.remove() }
        let store = try ImageStore(root: scratch.path + "/store")
        var content = HostImageContent(executables: ["/bin/sh", "/bin/cat"], files: ["/etc/hostname"])
        content.users = [HostImageContent.User("app", id: 4242, home: "/app")]
        content.directories = [HostImageContent.Directory("/app", mode: 0o700, owner: 4242)]
        content.symlinks = ["/usr/local/bin/show": "/bin/cat"]
        content.config.cmd = ["sh"]
        let reference = try ImageReference(parsing: "berth.local/host-test:1")
        let image = try await store.makeImage(from: content, as: reference)
        #expect(try store.image(reference.description).id == image.id)
        let again = try await ImageStore(root: scratch.path + "/again").makeImage(from: content, as: reference)
        #expect(again.id == image.id, "the same host files give the same image")

        let layers = try LayerStore(root: scratch.path + "/layers")
        let top = try #require(try await store.unpack(image, into: layers))
        let tree = try #require(layers.layer(chainID: top)).path
        let shown = try run(["chroot", tree, "/usr/local/bin/show", "/etc/hostname", "/etc/passwd"])
        #expect(shown.status == 0, "\(shown.output)")
        #expect(shown.output.hasPrefix(try String(contentsOfFile: "/etc/hostname", encoding: .utf8)))
        #expect(shown.output.contains("app:x:4242:4242:app:/app:/bin/false\n"))
        let app = try FileManager.default.attributesOfItem(atPath: tree + "/app")
        #expect(app[.ownerAccountID] as? Int == 4242 && app[.posixPermissions] as? Int == 0o700)
    }
}
