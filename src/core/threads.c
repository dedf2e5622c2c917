/* The thread pool of a rank (see sys.h): the elementwise kernels of src/nn and the inflation of chunks in src/io.

   With one rank per node and several BLAS threads, sgemm runs on all cores but everything between two sgemm
   calls would run on one. The pool runs the passes that gain from more cores (Adam, the reconstruction loss,
   the reparameterisation noise, the sparse first layer, inflating the chunks of a read) on as many threads as
   BLAS uses (CsBLASGetThreads). Workers spin briefly after a task (passes come in bursts a few microseconds apart)
   and then sleep on a condition variable, so they never compete with the BLAS threads during a long sgemm.
   Workers never call MPI. */
#include <cellshift/sys.h>
#include <pthread.h>
#include <stdatomic.h>

static struct {
  int             nt;      /* threads including the caller; 0 = not started */
  pthread_mutex_t mu;
  pthread_cond_t  start, done;
  atomic_uint     gen;     /* task generation */
  atomic_int      pending; /* workers still running the current task */
  CsPoolTask        fn;
  void           *ctx;
} pool = {0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL, NULL};

/* Polls before sleeping (a pause is up to ~140 cycles on recent Intel cores): a few microseconds, enough to catch
   the next pass of the same block (they follow each other after a small allreduce) but short enough not to steal
   a core from the next sgemm. */
#define CS_SPIN 200

static inline void CpuRelax(void)
{
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

static void *Worker(void *arg)
{
  int      t    = (int)(intptr_t)arg;
  unsigned seen = 0;
  for (;;) {
    unsigned g;
    int      spin = 0;
    while ((g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen && spin < CS_SPIN) {
      spin++;
      CpuRelax();
    }
    if (g == seen) {
      pthread_mutex_lock(&pool.mu);
      while ((g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen) pthread_cond_wait(&pool.start, &pool.mu);
      pthread_mutex_unlock(&pool.mu);
    }
    seen = g;
    pool.fn(pool.ctx, t, pool.nt);
    if (atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&pool.mu);
      pthread_cond_signal(&pool.done);
      pthread_mutex_unlock(&pool.mu);
    }
  }
  return NULL;
}

static int PoolStart(void)
{
  int want = CsBLASGetThreads();
  if (pool.nt) return pool.nt;
  if (want < 1) want = 1;
  if (want > 64) want = 64;
  pool.nt = 1;
  for (int t = 1; t < want; t++) {
    pthread_t      th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, Worker, (void *)(intptr_t)t)) break; /* run with the threads we got */
    pthread_attr_destroy(&attr);
    pool.nt++;
  }
  return pool.nt;
}

int CsPoolThreads(void) { return PoolStart(); }

void CsPoolRun(CsPoolTask fn, void *ctx)
{
  int nt = PoolStart(), spin = 0;
  if (nt == 1) {
    fn(ctx, 0, 1);
    return;
  }
  pool.fn = fn, pool.ctx = ctx;
  atomic_store_explicit(&pool.pending, nt - 1, memory_order_relaxed);
  pthread_mutex_lock(&pool.mu);
  atomic_fetch_add_explicit(&pool.gen, 1, memory_order_release);
  pthread_cond_broadcast(&pool.start);
  pthread_mutex_unlock(&pool.mu);
  fn(ctx, 0, nt);
  while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0 && spin < CS_SPIN) spin++, CpuRelax();
  if (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0) {
    pthread_mutex_lock(&pool.mu);
    while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
  }
}

void CsPoolChunk(size_t n, int t, int nt, size_t align, size_t *lo, size_t *hi)
{
  size_t c = (n + (size_t)nt - 1) / (size_t)nt;
  c   = (c + align - 1) / align * align;
  *lo = PetscMin(n, (size_t)t * c);
  *hi = PetscMin(n, *lo + c);
}

/* CsPoolFor: every thread takes the next item until none is left. */
typedef struct {
  CsPoolItem   fn;
  void        *ctx;
  int64_t      n;
  int          nt; /* threads that take items */
  atomic_llong next;
} PoolLoop;

static void LoopTask(void *ctx, int t, int nt)
{
  PoolLoop *l = (PoolLoop *)ctx;
  (void)nt;
  if (t >= l->nt) return;
  for (int64_t i; (i = (int64_t)atomic_fetch_add_explicit(&l->next, 1, memory_order_relaxed)) < l->n;) l->fn(l->ctx, i, t);
}

void CsPoolFor(int64_t n, int maxthreads, CsPoolItem fn, void *ctx)
{
  PoolLoop l = {fn, ctx, n, maxthreads, 0};

  if (n <= 0) return;
  if (n == 1 || maxthreads <= 1) /* no wake-up when one thread does it all */
    for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
  else CsPoolRun(LoopTask, &l);
}
