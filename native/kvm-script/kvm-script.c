// SPDX-License-Identifier: MIT
/*
 * kvm-script.c - runs the KVM subset of a passthru syscall script (JSON Lines, the
 * oracle's SCRIPT.md, version 1) against the kernel it runs on, and prints one result line
 * per operation exactly as the model's replay runner does (src/userspace/replay/runner.ts).
 * The differential tests build it with the machine's C compiler and compare its lines
 * with the model's.
 *
 *   usage: kvm-script SCRIPT.jsonl
 *
 * Operations: open, close, dup, eventfd, and ioctl with an integer, "$name", "NULL" or a
 * struct argument (u8 u16 u32 u64 s32 s64 bytes:N fields packed with natural alignment,
 * followed by 64 KiB of zeros; a u64 field may hold a nested struct, packed separately and
 * passed by address). Any other operation answers ENOSYS, as SCRIPT.md asks of a runner
 * that cannot perform it. Exit status: 0 after running the script, 2 for a script it
 * cannot read. No third-party code; no kernel headers: request numbers come from the script.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* ---------------------------------------------------------------- JSON values */

enum jt { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
	enum jt t;
	char *s;		/* J_STR, or the number's text */
	struct jv **items;	/* J_ARR values, J_OBJ values */
	char **keys;		/* J_OBJ */
	int n;
};

static const char *P;

static void ws(void) { while (*P && isspace((unsigned char)*P)) P++; }

static struct jv *jnew(enum jt t)
{
	struct jv *v = calloc(1, sizeof(*v));
	if (!v) exit(3);
	v->t = t;
	return v;
}

static char *jstr(void)
{
	size_t cap = 16, n = 0;
	char *o = malloc(cap);
	if (!o || *P != '"') return NULL;
	P++;
	while (*P && *P != '"') {
		char c = *P++;
		if (c == '\\') {
			c = *P++;
			if (c == 'n') c = '\n';
			else if (c == 't') c = '\t';
			else if (c == 'u') {
				unsigned x = 0;
				sscanf(P, "%4x", &x);
				P += 4;
				c = (char)x;
			}
		}
		if (n + 2 > cap && !(o = realloc(o, cap *= 2))) exit(3);
		o[n++] = c;
	}
	if (*P != '"') return NULL;
	P++;
	o[n] = 0;
	return o;
}

static struct jv *jparse(void)
{
	ws();
	if (*P == '{' || *P == '[') {
		int obj = *P == '{';
		struct jv *v = jnew(obj ? J_OBJ : J_ARR);
		P++;
		ws();
		if (*P == (obj ? '}' : ']')) { P++; return v; }
		for (;;) {
			char *k = NULL;
			ws();
			if (obj) {
				if (!(k = jstr())) return NULL;
				ws();
				if (*P++ != ':') return NULL;
			}
			struct jv *x = jparse();
			if (!x) return NULL;
			v->items = realloc(v->items, (v->n + 1) * sizeof(*v->items));
			v->keys = realloc(v->keys, (v->n + 1) * sizeof(*v->keys));
			v->items[v->n] = x;
			v->keys[v->n++] = k;
			ws();
			if (*P == ',') { P++; continue; }
			if (*P == (obj ? '}' : ']')) { P++; return v; }
			return NULL;
		}
	}
	if (*P == '"') {
		struct jv *v = jnew(J_STR);
		return (v->s = jstr()) ? v : NULL;
	}
	if (!strncmp(P, "null", 4)) { P += 4; return jnew(J_NULL); }
	if (!strncmp(P, "true", 4)) { P += 4; struct jv *v = jnew(J_BOOL); v->n = 1; return v; }
	if (!strncmp(P, "false", 5)) { P += 5; return jnew(J_BOOL); }
	if (*P == '-' || isdigit((unsigned char)*P)) {
		const char *b = P++;
		while (isdigit((unsigned char)*P)) P++;
		struct jv *v = jnew(J_NUM);
		v->s = strndup(b, P - b);
		return v;
	}
	return NULL;
}

static struct jv *jget(const struct jv *o, const char *k)
{
	if (!o || o->t != J_OBJ) return NULL;
	for (int i = 0; i < o->n; i++)
		if (!strcmp(o->keys[i], k)) return o->items[i];
	return NULL;
}

/* ---------------------------------------------------------------- names */

struct name { char *n; int64_t fd; };
static struct name names[256];
static int nnames;

static void bind_fd(const char *n, int64_t fd)
{
	for (int i = 0; i < nnames; i++)
		if (!strcmp(names[i].n, n)) { names[i].fd = fd; return; }
	if (nnames < 256) names[nnames++] = (struct name){ strdup(n), fd };
}

static int64_t lookup(const char *n)
{
	for (int i = 0; i < nnames; i++)
		if (!strcmp(names[i].n, n)) return names[i].fd;
	return -1;
}

/* int_value(): a number, "0x..", "-0x..", "#int:N", "$name", "NULL" */
static uint64_t ival(const struct jv *v)
{
	if (!v) return 0;
	if (v->t == J_NUM) return v->s[0] == '-' ? (uint64_t)strtoll(v->s, NULL, 10) : strtoull(v->s, NULL, 10);
	if (v->t != J_STR) return 0;
	const char *s = v->s;
	if (s[0] == '$') return (uint64_t)lookup(s + 1);
	if (!strcmp(s, "NULL")) return 0;
	if (!strncmp(s, "#int:", 5)) s += 5;
	int neg = s[0] == '-';
	uint64_t x = strtoull(s + neg, NULL, 0);
	return neg ? -x : x;
}

/* ---------------------------------------------------------------- output */

static char out[1 << 20];
static size_t olen;

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	olen += vsnprintf(out + olen, sizeof(out) - olen, fmt, ap);
	va_end(ap);
}

static const struct { int e; const char *n; } ERRNOS[] = {
	{ EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { ESRCH, "ESRCH" }, { EINTR, "EINTR" },
	{ EIO, "EIO" }, { ENXIO, "ENXIO" }, { E2BIG, "E2BIG" }, { EBADF, "EBADF" },
	{ EAGAIN, "EAGAIN" }, { ENOMEM, "ENOMEM" }, { EACCES, "EACCES" }, { EFAULT, "EFAULT" },
	{ EBUSY, "EBUSY" }, { EEXIST, "EEXIST" }, { ENODEV, "ENODEV" }, { ENOTDIR, "ENOTDIR" },
	{ EINVAL, "EINVAL" }, { ENFILE, "ENFILE" }, { EMFILE, "EMFILE" }, { ENOTTY, "ENOTTY" },
	{ ENOSPC, "ENOSPC" }, { ESPIPE, "ESPIPE" }, { ERANGE, "ERANGE" }, { EDEADLK, "EDEADLK" },
	{ ENOSYS, "ENOSYS" }, { EOVERFLOW, "EOVERFLOW" }, { EBADFD, "EBADFD" },
	{ EMSGSIZE, "EMSGSIZE" }, { EOPNOTSUPP, "EOPNOTSUPP" }, { EADDRINUSE, "EADDRINUSE" },
};

static void ret_errno(long r, int err, int fdret)
{
	if (r < 0) {
		const char *n = NULL;
		for (size_t i = 0; i < sizeof(ERRNOS) / sizeof(*ERRNOS); i++)
			if (ERRNOS[i].e == err) n = ERRNOS[i].n;
		if (n) emit(",\"ret\":-1,\"errno\":\"%s\"", n);
		else emit(",\"ret\":-1,\"errno\":\"E%d\"", err);
	} else if (fdret) {
		emit(",\"ret\":\"fd\",\"errno\":null");
	} else {
		emit(",\"ret\":%ld,\"errno\":null", r);
	}
}

/* ---------------------------------------------------------------- structs */

#define GUARD (64u << 10)

struct packed {
	const struct jv *fields;	/* the "struct" array */
	unsigned char *mem;
	size_t *offs, *sizes;
	uint64_t *input;
	struct packed **sub;
};

static size_t fsize(const char *t)
{
	return !strncmp(t, "bytes:", 6) ? strtoul(t + 6, NULL, 10) : strtoul(t + 1, NULL, 10) / 8;
}

static void hexin(unsigned char *dst, const char *hex, size_t max)
{
	for (size_t i = 0; hex[2 * i] && hex[2 * i + 1] && i < max; i++) {
		unsigned x;
		sscanf(hex + 2 * i, "%2x", &x);
		dst[i] = (unsigned char)x;
	}
}

static struct packed *pack(const struct jv *st)
{
	const struct jv *f = jget(st, "struct");
	if (!f || f->t != J_ARR) return NULL;
	struct packed *p = calloc(1, sizeof(*p));
	p->fields = f;
	p->offs = calloc(f->n + 1, sizeof(size_t));
	p->sizes = calloc(f->n + 1, sizeof(size_t));
	p->input = calloc(f->n + 1, sizeof(uint64_t));
	p->sub = calloc(f->n + 1, sizeof(*p->sub));
	size_t off = 0, maxal = 1;
	for (int k = 0; k < f->n; k++) {
		const char *t = f->items[k]->items[0]->s;
		size_t n = fsize(t), al = !strncmp(t, "bytes:", 6) ? 1 : n;
		off = (off + al - 1) / al * al;
		p->offs[k] = off;
		p->sizes[k] = n;
		off += n;
		if (al > maxal) maxal = al;
	}
	size_t size = (off + maxal - 1) / maxal * maxal;
	p->mem = calloc(1, size + GUARD);
	for (int k = 0; k < f->n; k++) {
		const char *t = f->items[k]->items[0]->s;
		const struct jv *val = f->items[k]->items[2];
		unsigned char *at = p->mem + p->offs[k];
		if (!strncmp(t, "bytes:", 6)) {
			if (val->t == J_STR) hexin(at, val->s, p->sizes[k]);
			continue;
		}
		uint64_t v;
		if (val->t == J_OBJ) {
			p->sub[k] = pack(val);
			v = (uint64_t)(uintptr_t)p->sub[k]->mem;
		} else {
			v = ival(val);
		}
		p->input[k] = v;
		memcpy(at, &v, p->sizes[k]); /* little-endian: the low bytes */
	}
	return p;
}

static void readback(const struct packed *p, const struct jv *bind, int ok)
{
	const struct jv *f = p->fields;
	emit("{");
	for (int k = 0; k < f->n; k++) {
		const char *t = f->items[k]->items[0]->s;
		const char *name = f->items[k]->items[1]->s;
		const struct jv *val = f->items[k]->items[2];
		const unsigned char *at = p->mem + p->offs[k];
		size_t n = p->sizes[k];
		emit("%s\"%s\":", k ? "," : "", name);
		if (!strncmp(t, "bytes:", 6)) {
			emit("\"");
			for (size_t i = 0; i < n; i++) emit("%02x", at[i]);
			emit("\"");
			continue;
		}
		uint64_t now = 0;
		memcpy(&now, at, n);
		uint64_t mask = n == 8 ? ~0ull : (1ull << (n * 8)) - 1;
		int sgn = t[0] == 's';
		if (p->sub[k] && now == p->input[k]) {
			readback(p->sub[k], NULL, ok);
			continue;
		}
		const struct jv *b = jget(bind, name);
		if (b && b->t == J_STR && ok) {
			int64_t fd = sgn ? (n == 4 ? (int64_t)(int32_t)now : (int64_t)now) : (int64_t)now;
			bind_fd(b->s, fd);
			emit("\"fd\"");
			continue;
		}
		if (val->t == J_STR && val->s[0] == '$' && (now & mask) == (p->input[k] & mask)) {
			emit("\"%s\"", val->s);
			continue;
		}
		if (n == 8)
			sgn ? emit("\"%lld\"", (long long)now) : emit("\"0x%llx\"", (unsigned long long)now);
		else if (sgn)
			emit("%d", (int32_t)now);
		else
			emit("%llu", (unsigned long long)now);
	}
	emit("}");
}

/* ---------------------------------------------------------------- operations */

static int oflags(const struct jv *fl)
{
	int f = 0;
	for (int i = 0; fl && i < fl->n; i++) {
		const char *s = fl->items[i]->s;
		if (!strcmp(s, "O_WRONLY")) f |= O_WRONLY;
		else if (!strcmp(s, "O_RDWR")) f |= O_RDWR;
		else if (!strcmp(s, "O_CLOEXEC")) f |= O_CLOEXEC;
		else if (!strcmp(s, "O_NONBLOCK")) f |= O_NONBLOCK;
	}
	return f;
}

static void bind_failed(const struct jv *bind)
{
	for (int i = 0; bind && i < bind->n; i++)
		if (bind->items[i]->t == J_STR) bind_fd(bind->items[i]->s, -1);
}

static void step(const struct jv *o, int i)
{
	const struct jv *op = jget(o, "op"), *as = jget(o, "as");
	const char *name = op && op->t == J_STR ? op->s : "";
	emit("{\"i\":%d,\"op\":\"%s\"", i, name);
	long r;
	if (!strcmp(name, "open")) {
		r = open(jget(o, "path")->s, oflags(jget(o, "flags")));
		int e = errno;
		bind_fd(as->s, r < 0 ? -1 : r);
		ret_errno(r, e, 1);
	} else if (!strcmp(name, "close")) {
		r = close((int)(int64_t)ival(jget(o, "fd")));
		ret_errno(r, errno, 0);
	} else if (!strcmp(name, "dup")) {
		r = dup((int)(int64_t)ival(jget(o, "fd")));
		int e = errno;
		bind_fd(as->s, r < 0 ? -1 : r);
		ret_errno(r, e, 1);
	} else if (!strcmp(name, "eventfd")) {
		r = eventfd(0, 0);
		int e = errno;
		bind_fd(as->s, r < 0 ? -1 : r);
		ret_errno(r, e, 1);
	} else if (!strcmp(name, "ioctl")) {
		const struct jv *arg = jget(o, "arg"), *bind = jget(o, "bind");
		emit(",\"req\":\"%s\"", jget(o, "req")->s);
		struct packed *p = arg && arg->t == J_OBJ ? pack(arg) : NULL;
		uint64_t a = p ? (uint64_t)(uintptr_t)p->mem : ival(arg);
		unsigned long nr = strtoul(jget(o, "nr")->s, NULL, 16);
		r = ioctl((int)(int64_t)ival(jget(o, "fd")), nr, (unsigned long)a);
		int e = errno;
		if (as && as->t == J_STR) bind_fd(as->s, r < 0 ? -1 : r);
		if (bind && r < 0) bind_failed(bind);
		ret_errno(r, e, as && as->t == J_STR);
		if (p) {
			emit(",\"out\":");
			readback(p, bind, r >= 0);
		}
	} else {
		ret_errno(-1, ENOSYS, 0);
	}
	emit("}\n");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: kvm-script SCRIPT.jsonl\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "r");
	if (!f) {
		perror(argv[1]);
		return 2;
	}
	static char line[1 << 16];
	int lineno = 0, i = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		P = line;
		ws();
		if (!*P) continue;
		struct jv *o = jparse();
		if (!o || o->t != J_OBJ) {
			fprintf(stderr, "%s:%d: not a JSON object\n", argv[1], lineno);
			return 2;
		}
		if (jget(o, "script")) continue; /* the header */
		step(o, ++i);
		fputs(out, stdout);
		olen = 0;
		out[0] = 0;
	}
	return 0;
}
