// SPDX-License-Identifier: MIT
/*
 * agent.c - passthru's oracle agent: runs a compiled syscall program and writes what the
 * kernel answered, raw. Everything that can run on the host does (src/oracle/program.ts):
 * the script is checked, request numbers and open flags are resolved, struct arguments are
 * packed into bytes and the result lines of SCRIPT.md are formatted from the raw answers.
 * What is left here is what only the machine under test can do: make the calls.
 *
 * usage: agent PROGRAM [OUT]      run a program (OUT defaults to standard output)
 *        agent --dump RULES OUT   copy the files a snapshot is made of (see dump_main)
 *
 * A program is text, one item per line, fields separated by one space, strings as hex:
 *
 *   passthru-agent 1 NSLOTS                       header
 *   open SLOT FLAGS PATH                          each operation line gives one result
 *   close V | dup V SLOT | eventfd SLOT
 *   mmap SLOT SIZE PROT | munmap SLOT | fill SLOT OFF HEX | check SLOT OFF HEX
 *   pread V OFF SIZE | pwrite V OFF HEX
 *   swrite PATH VALUE | sread PATH | rlink PATH
 *   block SIZE HEX                                struct memory for the next ioctl
 *   patch BLOCK OFF WIDTH V|@BLOCK                 a value only known here (fd, address)
 *   bindf BLOCK OFF WIDTH SIGNED SLOT             after a successful ioctl: SLOT = field
 *   ioctl V NR ARG AS                             ARG: V or @BLOCK; AS: SLOT or -
 *
 * V is =HEX (a literal) or $SLOT or $SLOT+HEX (a slot's value plus an offset); a slot
 * holds an fd (-1 when the call that made it failed) or a buffer address (0). Empty hex
 * strings are written as "-". The answer to each operation is one line:
 *
 *   r RET ERRNO [pHEX]... [bHEX]... [dHEX]
 *
 * RET is the syscall's return value (decimal), ERRNO its errno (0 on success); pHEX is
 * each patched value in order (u64), bHEX each block's bytes after the call, dHEX the data
 * read (pread, sread, rlink's target, check's bytes when they differ). Framing:
 *
 *   @@PASSTHRU results N  ...  @@PASSTHRU end N
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <malloc.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define MAXTOK 8
#define MAXBLK 16
#define MAX_IO (1u << 20)
#define GUARD (64u << 10)
/* script buffers: fixed addresses, 2 MiB-aligned, a gap after each, never reused */
#define BUF_BASE 0x200000000000ull
#define BUF_ALIGN (2ull << 20)
#define BUF_GAP (64ull << 10)

struct slot {
	int64_t v;		/* fd, or buffer address */
	uint64_t size;
	int mapped;
};

struct block {
	unsigned char *mem;
	size_t size;
};

static struct slot *slots;
static size_t nslots;
static uint64_t next_buf = BUF_BASE;
static struct block blocks[MAXBLK];
static size_t nblocks;
static struct { size_t b, off, w; uint64_t v; } patches[64];
static size_t npatches;
static struct { size_t b, off, w; int sgn; size_t s; } binds[8];
static size_t nbinds;
static FILE *out;

static char *read_file(const char *path);

static void fail(const char *msg, const char *line)
{
	fprintf(stderr, "agent: %s: %s\n", msg, line);
	exit(2);
}

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p)
		fail("out of memory", "");
	return p;
}

static size_t unhex(const char *h, unsigned char *dst, size_t max)
{
	size_t n = 0;
	if (!strcmp(h, "-"))
		return 0;
	for (; h[0] && h[1] && n < max; h += 2) {
		char t[3] = { h[0], h[1], 0 };
		dst[n++] = (unsigned char)strtoul(t, NULL, 16);
	}
	return n;
}

static char *unhex_str(const char *h)
{
	char *s = xmalloc(strlen(h) / 2 + 1);
	unhex(h, (unsigned char *)s, strlen(h) / 2);
	return s;
}

static void put_hex(char tag, const unsigned char *p, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	fputc(' ', out);
	fputc(tag, out);
	for (size_t i = 0; i < n; i++) {
		fputc(hx[p[i] >> 4], out);
		fputc(hx[p[i] & 15], out);
	}
}

static struct slot *slot_of(const char *s)
{
	char *e;
	unsigned long i = strtoul(s, &e, 10);
	if (*e || i >= nslots)
		fail("bad slot", s);
	return &slots[i];
}

static uint64_t value(const char *v)
{
	if (v[0] == '=')
		return strtoull(v + 1, NULL, 16);
	if (v[0] != '$')
		fail("bad value", v);
	char buf[32];
	snprintf(buf, sizeof(buf), "%s", v + 1);
	char *plus = strchr(buf, '+');
	uint64_t off = 0;
	if (plus) {
		*plus = 0;
		off = strtoull(plus + 1, NULL, 16);
	}
	return (uint64_t)slot_of(buf)->v + off;
}

static uint64_t num(const char *s)
{
	return strtoull(s, NULL, 10);
}

/* r RET ERRNO */
static void ret(long long r, int err)
{
	fprintf(out, "r %lld %d", r, r < 0 ? err : 0);
}

static void end(void)
{
	fputc('\n', out);
	fflush(out);
}

static void put_int(unsigned char *p, size_t w, uint64_t v)
{
	for (size_t i = 0; i < w; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_int(const unsigned char *p, size_t w, int sgn)
{
	uint64_t v = 0;
	for (size_t i = 0; i < w; i++)
		v |= (uint64_t)p[i] << (8 * i);
	if (sgn && w < 8 && (v >> (8 * w - 1)) & 1)
		v |= ~0ull << (8 * w);
	return v;
}

/* ------------------------------------------------------------ operations */
static void op_open(char **t)
{
	char *path = unhex_str(t[3]);
	errno = 0;
	int fd = open(path, (int)num(t[2]));
	slot_of(t[1])->v = fd < 0 ? -1 : fd;
	ret(fd, errno);
	free(path);
}

static void op_close(char **t)
{
	errno = 0;
	int r = close((int)value(t[1]));
	ret(r, errno);
}

static void op_dup(char **t)
{
	errno = 0;
	int fd = dup((int)value(t[1]));
	slot_of(t[2])->v = fd < 0 ? -1 : fd;
	ret(fd, errno);
}

static void op_eventfd(char **t)
{
	errno = 0;
	int fd = eventfd(0, 0);
	slot_of(t[1])->v = fd < 0 ? -1 : fd;
	ret(fd, errno);
}

static void op_mmap(char **t)
{
	struct slot *s = slot_of(t[1]);
	uint64_t size = num(t[2]);
	errno = 0;
	void *a = mmap((void *)(uintptr_t)next_buf, size, (int)num(t[3]),
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	int err = errno;
	s->size = size;
	s->v = 0;
	s->mapped = 0;
	if (a != MAP_FAILED) {
		s->v = (int64_t)(uintptr_t)a;
		s->mapped = 1;
		next_buf = (next_buf + size + BUF_GAP + BUF_ALIGN - 1) / BUF_ALIGN * BUF_ALIGN;
	}
	ret(a == MAP_FAILED ? -1 : 0, err);
}

static void op_munmap(char **t)
{
	struct slot *s = slot_of(t[1]);
	if (!s->mapped) {
		ret(-1, EINVAL);
		return;
	}
	errno = 0;
	int r = munmap((void *)(uintptr_t)s->v, s->size);
	if (!r)
		s->mapped = 0;
	ret(r, errno);
}

static void op_fill_check(char **t, int check)
{
	struct slot *s = slot_of(t[1]);
	unsigned char *p = (unsigned char *)(uintptr_t)s->v + num(t[2]);
	size_t n = strcmp(t[3], "-") ? strlen(t[3]) / 2 : 0;
	if (!s->mapped) {
		ret(-1, EFAULT);
		return;
	}
	unsigned char *want = xmalloc(n);
	unhex(t[3], want, n);
	if (!check) {
		memcpy(p, want, n);
		ret(0, 0);
	} else if (!memcmp(p, want, n)) {
		ret(0, 0);
	} else {
		ret(1, 0);
		put_hex('d', p, n);
	}
	free(want);
}

static void op_fill(char **t)
{
	op_fill_check(t, 0);
}

static void op_check(char **t)
{
	op_fill_check(t, 1);
}

static void op_pread(char **t)
{
	size_t size = num(t[3]);
	unsigned char *buf = xmalloc(size);
	errno = 0;
	ssize_t n = pread((int)value(t[1]), buf, size, (off_t)num(t[2]));
	ret(n, errno);
	if (n >= 0)
		put_hex('d', buf, (size_t)n);
	free(buf);
}

static void op_pwrite(char **t)
{
	size_t n = strcmp(t[3], "-") ? strlen(t[3]) / 2 : 0;
	unsigned char *buf = xmalloc(n);
	unhex(t[3], buf, n);
	errno = 0;
	ssize_t w = pwrite((int)value(t[1]), buf, n, (off_t)num(t[2]));
	ret(w, errno);
	free(buf);
}

static void op_swrite(char **t)
{
	char *path = unhex_str(t[1]), *v = unhex_str(t[2]);
	errno = 0;
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		ret(-1, errno);
	} else {
		ssize_t w = write(fd, v, strlen(v));
		int err = errno;
		close(fd);
		ret(w < 0 ? -1 : 0, err);
	}
	free(path);
	free(v);
}

static void op_sread(char **t)
{
	char *path = unhex_str(t[1]);
	errno = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0) {
		ret(-1, errno);
		return;
	}
	unsigned char *b = xmalloc(MAX_IO + 4096);
	size_t len = 0;
	ssize_t n;
	while ((n = read(fd, b + len, 4096)) > 0 && (len += (size_t)n) < MAX_IO)
		;
	int err = errno;
	close(fd);
	ret(n < 0 ? -1 : 0, err);
	if (n >= 0)
		put_hex('d', b, len);
	free(b);
}

static void op_rlink(char **t)
{
	char *path = unhex_str(t[1]);
	char target[4096];
	errno = 0;
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	int err = errno;
	free(path);
	ret(n < 0 ? -1 : 0, err);
	if (n >= 0)
		put_hex('d', (unsigned char *)target, (size_t)n);
}

static void op_block(char **t)
{
	if (nblocks == MAXBLK)
		fail("too many blocks", t[1]);
	struct block *b = &blocks[nblocks++];
	b->size = num(t[1]);
	size_t len = (b->size + 4095) / 4096 * 4096 + GUARD;
	void *mem;
	if (posix_memalign(&mem, 4096, len))
		fail("out of memory", t[1]);
	memset(mem, 0, len);
	b->mem = mem;
	unhex(t[2], b->mem, b->size);
}

static struct block *block_of(const char *s)
{
	unsigned long i = strtoul(s, NULL, 10);
	if (i >= nblocks)
		fail("bad block", s);
	return &blocks[i];
}

static void op_patch(char **t)
{
	struct block *b = block_of(t[1]);
	size_t off = num(t[2]), w = num(t[3]);
	uint64_t v = t[4][0] == '@' ? (uint64_t)(uintptr_t)block_of(t[4] + 1)->mem : value(t[4]);
	if (npatches == sizeof(patches) / sizeof(patches[0]) || off + w > b->size)
		fail("bad patch", t[2]);
	put_int(b->mem + off, w, v);
	patches[npatches].v = v;
	npatches++;
}

static void op_bindf(char **t)
{
	if (nbinds == sizeof(binds) / sizeof(binds[0]))
		fail("too many binds", t[1]);
	binds[nbinds].b = (size_t)(block_of(t[1]) - blocks);
	binds[nbinds].off = num(t[2]);
	binds[nbinds].w = num(t[3]);
	binds[nbinds].sgn = (int)num(t[4]);
	binds[nbinds].s = (size_t)(slot_of(t[5]) - slots);
	nbinds++;
}

static void op_ioctl(char **t)
{
	unsigned long arg = t[3][0] == '@' ? (unsigned long)(uintptr_t)block_of(t[3] + 1)->mem
					   : (unsigned long)value(t[3]);
	int fd = (int)value(t[1]);
	errno = 0;
	int rc = ioctl(fd, (unsigned long)strtoull(t[2], NULL, 16), arg);
	int err = errno;
	if (strcmp(t[4], "-"))
		slot_of(t[4])->v = rc >= 0 ? rc : -1;
	for (size_t i = 0; i < nbinds; i++) {
		struct block *b = &blocks[binds[i].b];
		slots[binds[i].s].v =
			rc < 0 ? -1 : (int64_t)get_int(b->mem + binds[i].off, binds[i].w, binds[i].sgn);
	}
	ret(rc, err);
	for (size_t i = 0; i < npatches; i++)
		fprintf(out, " p%llx", (unsigned long long)patches[i].v);
	for (size_t i = 0; i < nblocks; i++) {
		put_hex('b', blocks[i].mem, blocks[i].size);
		free(blocks[i].mem);
	}
	nblocks = npatches = nbinds = 0;
}

static const struct {
	const char *name;
	int ntok;		/* fields after the name */
	int result;		/* writes a result line */
	void (*run)(char **t);
} ops[] = {
	{ "open", 3, 1, op_open },     { "close", 1, 1, op_close },   { "dup", 2, 1, op_dup },
	{ "eventfd", 1, 1, op_eventfd }, { "mmap", 3, 1, op_mmap },   { "munmap", 1, 1, op_munmap },
	{ "fill", 3, 1, op_fill },     { "check", 3, 1, op_check },   { "pread", 3, 1, op_pread },
	{ "pwrite", 3, 1, op_pwrite }, { "swrite", 2, 1, op_swrite }, { "sread", 1, 1, op_sread },
	{ "rlink", 1, 1, op_rlink },   { "block", 2, 0, op_block },   { "patch", 4, 0, op_patch },
	{ "bindf", 5, 0, op_bindf },   { "ioctl", 4, 1, op_ioctl },
};

/* ------------------------------------------------------------ dump */
/*
 * The snapshot is made on the host (src/oracle/snapshot.ts runs the project's capture over
 * a copy of the guest's files); here the files are copied. RULES, one per line, strings
 * as hex, regular expressions POSIX extended ("-" matches nothing):
 *
 *   walk ROOT DEPTH DIRS FILES   ROOT and below it, DEPTH levels: every directory and
 *                                link; descend into directories named like DIRS, read
 *                                files (and note device nodes) named like FILES
 *   links ROOT DEPTH DIRS FILES  the same from the target of each link in ROOT
 *   file PATH                    one file (or device node)
 *
 * OUT gets one line per entry, paths and contents as hex:
 *   D PATH | L PATH TARGET | F PATH MODE DATA | N PATH
 */
static void dump_hex(FILE *o, const unsigned char *p, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	if (!n)
		fputc('-', o);
	for (size_t i = 0; i < n; i++) {
		fputc(hx[p[i] >> 4], o);
		fputc(hx[p[i] & 15], o);
	}
}

static void dump_path(FILE *o, char tag, const char *path)
{
	fprintf(o, "%c ", tag);
	dump_hex(o, (const unsigned char *)path, strlen(path));
}

static void dump_entry(FILE *o, const char *path, const char *name, const regex_t *files)
{
	struct stat st;
	if (lstat(path, &st))
		return;
	if (S_ISLNK(st.st_mode)) {
		char t[PATH_MAX];
		ssize_t n = readlink(path, t, sizeof(t) - 1);
		if (n < 0)
			return;
		dump_path(o, 'L', path);
		fputc(' ', o);
		dump_hex(o, (unsigned char *)t, (size_t)n);
		fputc('\n', o);
	} else if (S_ISREG(st.st_mode) && files && !regexec(files, name, 0, NULL, 0)) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return;
		unsigned char *b = xmalloc(MAX_IO + 4096);
		size_t len = 0;
		ssize_t n;
		while ((n = read(fd, b + len, 4096)) > 0 && (len += (size_t)n) < MAX_IO)
			;
		close(fd);
		if (n >= 0) {
			dump_path(o, 'F', path);
			fprintf(o, " %o ", (unsigned)(st.st_mode & 07777));
			dump_hex(o, b, len);
			fputc('\n', o);
		}
		free(b);
	} else if ((S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) && files &&
		   !regexec(files, name, 0, NULL, 0)) {
		dump_path(o, 'N', path);
		fputc('\n', o);
	}
}

static void dump_walk(FILE *o, const char *dir, int depth, const regex_t *dirs, const regex_t *files)
{
	dump_path(o, 'D', dir);
	fputc('\n', o);
	if (depth <= 0)
		return;
	struct dirent **v;
	int n = scandir(dir, &v, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		const char *name = v[i]->d_name;
		char p[PATH_MAX];
		struct stat st;
		if (strcmp(name, ".") && strcmp(name, "..") &&
		    snprintf(p, sizeof(p), "%s/%s", dir, name) < (int)sizeof(p) && !lstat(p, &st)) {
			if (S_ISDIR(st.st_mode)) {
				if (dirs && !regexec(dirs, name, 0, NULL, 0))
					dump_walk(o, p, depth - 1, dirs, files);
				else {
					dump_path(o, 'D', p);
					fputc('\n', o);
				}
			} else {
				dump_entry(o, p, name, files);
			}
		}
		free(v[i]);
	}
	if (n >= 0)
		free(v);
}

static regex_t *compile_re(const char *hex, regex_t *re)
{
	char *s = unhex_str(hex);
	int none = !strcmp(hex, "-");
	if (!none && regcomp(re, s, REG_EXTENDED | REG_NOSUB))
		fail("bad regular expression", s);
	free(s);
	return none ? NULL : re;
}

static int dump_main(const char *rules, const char *outpath)
{
	FILE *o = fopen(outpath, "w");
	if (!o)
		fail("cannot write", outpath);
	char *text = read_file(rules), *save;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *t[6], *s2;
		int n = 0;
		for (char *w = strtok_r(line, " ", &s2); w && n < 6; w = strtok_r(NULL, " ", &s2))
			t[n++] = w;
		regex_t dre, fre;
		if (n == 2 && !strcmp(t[0], "file")) {
			char *p = unhex_str(t[1]);
			const char *base = strrchr(p, '/');
			regex_t all;
			regcomp(&all, ".", REG_EXTENDED | REG_NOSUB);
			dump_entry(o, p, base ? base + 1 : p, &all);
			regfree(&all);
			free(p);
		} else if (n == 5 && (!strcmp(t[0], "walk") || !strcmp(t[0], "links"))) {
			char *root = unhex_str(t[1]);
			regex_t *d = compile_re(t[3], &dre), *f = compile_re(t[4], &fre);
			struct stat st;
			if (!strcmp(t[0], "walk")) {
				if (!lstat(root, &st) && S_ISDIR(st.st_mode))
					dump_walk(o, root, (int)num(t[2]), d, f);
			} else {
				struct dirent **v;
				int k = scandir(root, &v, NULL, alphasort);
				for (int i = 0; i < k; i++) {
					char p[PATH_MAX], real[PATH_MAX];
					if (v[i]->d_name[0] != '.' &&
					    snprintf(p, sizeof(p), "%s/%s", root, v[i]->d_name) < (int)sizeof(p) &&
					    !lstat(p, &st) && S_ISLNK(st.st_mode) && realpath(p, real))
						dump_walk(o, real, (int)num(t[2]), d, f);
					free(v[i]);
				}
				if (k >= 0)
					free(v);
			}
			if (d)
				regfree(d);
			if (f)
				regfree(f);
			free(root);
		} else {
			fail("bad rule", n ? t[0] : "");
		}
	}
	free(text);
	return fclose(o) ? 1 : 0;
}

/* ------------------------------------------------------------ main */
static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		fail("cannot open the program", path);
	size_t cap = 1 << 16, len = 0;
	char *p = xmalloc(cap + 1);
	size_t n;
	while ((n = fread(p + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			cap *= 2;
			p = realloc(p, cap + 1);
			if (!p)
				fail("out of memory", path);
		}
	}
	fclose(f);
	p[len] = 0;
	return p;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--dump"))
		return dump_main(argv[2], argv[3]);
	if (argc < 2 || argc > 3) {
		fputs("usage: agent PROGRAM [OUT] | agent --dump RULES OUT\n", stderr);
		return 2;
	}
	mallopt(M_MMAP_MAX, 0);	/* the agent's memory from brk only: never in a script's hole */
	char *text = read_file(argv[1]);
	out = stdout;
	if (argc == 3) {
		int fd = open(argv[2], O_WRONLY | O_NOCTTY | O_CLOEXEC);
		struct termios tio;
		if (fd < 0 || !(out = fdopen(fd, "w")))
			fail("cannot open", argv[2]);
		if (!tcgetattr(fd, &tio)) {
			cfmakeraw(&tio);
			tcsetattr(fd, TCSANOW, &tio);
		}
	}
	char *save, *line = strtok_r(text, "\n", &save);
	unsigned long nops = 0;
	if (!line || sscanf(line, "passthru-agent 1 %zu %lu", &nslots, &nops) != 2)
		fail("not a passthru-agent 1 program", line ? line : "");
	slots = xmalloc((nslots + 1) * sizeof(*slots));
	for (size_t i = 0; i < nslots; i++)
		slots[i].v = -1;
	fprintf(out, "@@PASSTHRU results %lu\n", nops);
	fflush(out);
	unsigned long done = 0;
	while ((line = strtok_r(NULL, "\n", &save))) {
		char *t[MAXTOK + 1], *s2;
		int n = 0;
		for (char *w = strtok_r(line, " ", &s2); w && n <= MAXTOK; w = strtok_r(NULL, " ", &s2))
			t[n++] = w;
		size_t k;
		for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
			if (n && !strcmp(t[0], ops[k].name))
				break;
		if (k == sizeof(ops) / sizeof(ops[0]) || n != ops[k].ntok + 1)
			fail("bad program line", n ? t[0] : "");
		ops[k].run(t);
		if (ops[k].result) {
			end();
			done++;
		}
	}
	fprintf(out, "@@PASSTHRU end %lu\n", done);
	fflush(out);
	if (argc == 3) {
		tcdrain(fileno(out));
		fsync(fileno(out));
	}
	return 0;
}
