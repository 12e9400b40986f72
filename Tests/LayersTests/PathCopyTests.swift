import Glibc
import Layers
import Testing
import TestSupport

/// `docker cp`'s rules between two trees, here both below one scratch root: where a copy of
/// `src` lands for each kind of destination, and which copies are refused.
@Suite(.serialized)
struct PathCopyTests {
    /// One copy: from `source` to `destination` (paths below the root), and the paths that
    /// exist afterwards below `out`, or the error code.
    struct Rule: Sendable, CustomStringConvertible {
        var description: String
        var source: String
        var destination: String
        var outcome: Result<[String], LayerError>
    }

    static let rules: [Rule] = [
        Rule(description: "a file to a missing name is written as that name", source: "/src/file", destination: "/out/new",
             outcome: .success(["new"])),
        Rule(description: "a file to a directory goes under its own name", source: "/src/file", destination: "/out",
             outcome: .success(["file"])),
        Rule(description: "a file replaces a file", source: "/src/file", destination: "/out/existing",
             outcome: .success(["existing"])),
        Rule(description: "a directory to a directory goes under its own name", source: "/src/dir", destination: "/out",
             outcome: .success(["dir", "dir/inner"])),
        Rule(description: "a directory's contents with /.", source: "/src/dir/.", destination: "/out",
             outcome: .success(["inner"])),
        Rule(description: "a directory to a missing name is that name", source: "/src/dir", destination: "/out/copy",
             outcome: .success(["copy", "copy/inner"])),
        Rule(description: "a directory's contents to a missing name", source: "/src/dir/.", destination: "/out/fresh",
             outcome: .success(["fresh", "fresh/inner"])),
        Rule(description: "a symlink is copied as the symlink", source: "/src/link", destination: "/out",
             outcome: .success(["link"])),
        Rule(description: "a directory is not copied onto a file", source: "/src/dir", destination: "/out/existing",
             outcome: .failure(LayerError(code: .invalidArgument, detail: ""))),
        Rule(description: "a file to a missing directory name", source: "/src/file", destination: "/out/missing/",
             outcome: .failure(LayerError(code: .notFound, detail: ""))),
        Rule(description: "a directory into itself", source: "/src", destination: "/src/dir",
             outcome: .failure(LayerError(code: .invalidArgument, detail: ""))),
        Rule(description: "a directory into itself through a symlink", source: "/src", destination: "/out/up/dir",
             outcome: .failure(LayerError(code: .invalidArgument, detail: ""))),
        Rule(description: "a missing source", source: "/src/nope", destination: "/out",
             outcome: .failure(LayerError(code: .notFound, detail: ""))),
        Rule(description: "a missing destination parent", source: "/src/file", destination: "/out/a/b",
             outcome: .failure(LayerError(code: .notFound, detail: ""))),
    ]

    @Test(arguments: rules)
    func copiesFollowDockersRules(_ rule: Rule) throws {
        let root = try TemporaryDirectory(prefix: "pathcopy")
        defer { try? root.remove() }
        for directory in ["src", "src/dir", "out"] { #expect(mkdir(root.path + "/" + directory, 0o755) == 0) }
        try writeBytes(Array("file".utf8), to: root.path + "/src/file")
        try writeBytes(Array("inner".utf8), to: root.path + "/src/dir/inner")
        #expect(symlink("/etc/passwd", root.path + "/src/link") == 0)
        try writeBytes(Array("old".utf8), to: root.path + "/out/existing")
        #expect(symlink("/src", root.path + "/out/up") == 0)

        do {
            try copyPath(rule.source, in: root.path, to: rule.destination, in: root.path, preservingOwners: false)
            guard case .success(let created) = rule.outcome else {
                Issue.record("\(rule) was not refused")
                return
            }
            let tree = captureTree(root.path + "/out").keys.filter {
                $0 != "up" && ($0 != "existing" || rule.destination.hasSuffix("existing"))
            }
            #expect(tree.sorted() == created.sorted())
            if rule.destination.hasSuffix("existing") { #expect(readAll(root.path + "/out/existing") == Array("file".utf8)) }
        } catch {
            guard case .failure(let expected) = rule.outcome else {
                Issue.record("\(rule): \(error)")
                return
            }
            #expect(error.code == expected.code, "\(error)")
            #expect(readAll(root.path + "/out/existing") == Array("old".utf8))
        }
        // The symlink to the host's /etc/passwd is copied, never followed out of the root.
        #expect(readAll("/etc/passwd") != Array("file".utf8))
    }

    @Test func aSocketIsLeftOutAndTheRestIsCopied() throws {
        let root = try TemporaryDirectory(prefix: "pathcopy")
        defer { try? root.remove() }
        for directory in ["src", "out"] { #expect(mkdir(root.path + "/" + directory, 0o755) == 0) }
        try writeBytes(Array("a".utf8), to: root.path + "/src/a")
        #expect(mknod(root.path + "/src/socket", S_IFSOCK | 0o755, 0) == 0)
        try writeBytes(Array("z".utf8), to: root.path + "/src/z")
        try copyPath("/src", in: root.path, to: "/out", in: root.path, preservingOwners: false)
        #expect(captureTree(root.path + "/out").keys.sorted() == ["src", "src/a", "src/z"])
    }
}
