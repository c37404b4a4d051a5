// app.js: draws the FinOps dashboard from the breakdown baked into the page (no request of its
// own): totals, cost by AWS service and by resource, the estimate of each apply, the resources
// and the usage assumed. Chart.js is loaded before it by the page.
(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('data').textContent);
  const b = data.breakdown;
  const usd = (x) => (x >= 100 ? '$' + x.toFixed(0) : '$' + x.toFixed(2));
  const css = getComputedStyle(document.documentElement);
  const colour = (i) => css.getPropertyValue('--c' + ((i % 8) + 1)).trim();
  const fg = css.getPropertyValue('--fg').trim();
  const muted = css.getPropertyValue('--muted').trim();
  const line = css.getPropertyValue('--line').trim();
  const text = (id, s) => { document.getElementById(id).textContent = s; };

  text('stack', data.stack);
  text('monthly', usd(b.monthly));
  if (b.monthly_max > b.monthly + 0.005) text('monthly-max', 'up to ' + usd(b.monthly_max) + ' at autoscaling maximum');
  text('hourly', '$' + b.hourly.toFixed(4));
  text('snapshot', b.snapshot);
  const gen = document.getElementById('generated');
  gen.dateTime = data.generated;
  gen.textContent = data.generated.replace('T', ' ').replace(/\..*|Z$/, '') + ' UTC';

  // The AWS service of a price is its key's first part (`ec2.instance...`, `cloudfront.requests`).
  const SERVICES = {
    ec2: 'EC2', ebs: 'EBS volumes', vpc: 'Public IPv4', elb: 'Load balancing', waf: 'WAF', dynamodb: 'DynamoDB',
    fargate: 'Fargate', fargate_spot: 'Fargate Spot', logs: 'CloudWatch Logs', sns: 'SNS', s3: 'S3', ecr: 'ECR',
    cloudfront: 'CloudFront', lambda: 'Lambda', lambda_edge: 'Lambda@Edge', cognito: 'Cognito',
    data_out: 'Data transfer', nat: 'NAT gateway',
  };
  const byService = new Map();
  for (const r of b.resources) {
    for (const c of r.components) {
      if (c.monthly == null || c.monthly <= 0) continue;
      const key = c.price.split('.')[0];
      const name = SERVICES[key] || key.toUpperCase();
      byService.set(name, (byService.get(name) || 0) + c.monthly);
    }
  }
  const services = [...byService.entries()].sort((a, b2) => b2[1] - a[1]);
  const paid = b.resources.filter((r) => r.monthly > 0).sort((a, b2) => b2.monthly - a.monthly);

  Chart.defaults.color = muted;
  Chart.defaults.borderColor = line;
  Chart.defaults.font.family = css.getPropertyValue('font-family');
  const money = { callbacks: { label: (ctx) => ' ' + usd(ctx.parsed.y ?? ctx.parsed.x ?? ctx.parsed) } };
  window.charts = [
    new Chart(document.getElementById('by-service'), {
      type: 'doughnut',
      data: { labels: services.map((s) => s[0]), datasets: [{ data: services.map((s) => s[1]), backgroundColor: services.map((_, i) => colour(i)), borderColor: css.getPropertyValue('--card').trim() }] },
      options: { maintainAspectRatio: false, plugins: { legend: { position: 'right', labels: { color: fg } }, tooltip: money } },
    }),
    new Chart(document.getElementById('by-resource'), {
      type: 'bar',
      data: { labels: paid.map((r) => r.address), datasets: [{ data: paid.map((r) => r.monthly), backgroundColor: colour(0) }] },
      options: { indexAxis: 'y', maintainAspectRatio: false, plugins: { legend: { display: false }, tooltip: money }, scales: { x: { ticks: { callback: (v) => usd(v) } } } },
    }),
    new Chart(document.getElementById('history'), {
      type: 'line',
      data: {
        labels: data.history.map((h) => h.at.slice(0, 16).replace('T', ' ')),
        datasets: [
          { label: 'monthly', data: data.history.map((h) => h.monthly), borderColor: colour(0), backgroundColor: colour(0), stepped: true },
          { label: 'at autoscaling maximum', data: data.history.map((h) => h.monthly_max), borderColor: colour(1), backgroundColor: colour(1), stepped: true, borderDash: [4, 4] },
        ],
      },
      options: { maintainAspectRatio: false, plugins: { tooltip: money, legend: { labels: { color: fg } } }, scales: { y: { beginAtZero: true, ticks: { callback: (v) => usd(v) } } } },
    }),
  ];

  const rows = (id, list, cells) => {
    const body = document.querySelector('#' + id + ' tbody');
    for (const item of list) {
      const tr = document.createElement('tr');
      for (const [value, cls] of cells(item)) {
        const td = document.createElement('td');
        td.textContent = value;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  };
  rows('resources', [...b.resources].sort((x, y) => y.monthly - x.monthly), (r) => [[r.address], [r.region], [usd(r.monthly), 'num'], ['$' + r.hourly.toFixed(4), 'num']]);
  rows('usage', b.usage, (u) => [[u.doc + (u.given ? '' : ' (not given: 0)')], [String(u.value), 'num'], [u.unit]]);
  const unpriced = document.getElementById('unpriced');
  for (const u of b.unpriced) {
    const li = document.createElement('li');
    li.textContent = 'Not priced: ' + u;
    unpriced.appendChild(li);
  }
  document.body.dataset.drawn = String(window.charts.length);
})();
